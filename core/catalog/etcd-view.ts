/**
 * The etcd catalog's view: every key under the prefix, in memory, kept by one watch that
 * resumes from the last revision it applied. Reads are Map lookups (Docker asks Get many
 * times per operation; a list of 10,000 volumes is one sort at most).
 *
 * Consistency: `revision` is the highest revision whose events have all been applied.
 * `reached(rev)` resolves once the view has applied everything up to `rev`; the catalog uses it
 * after a commit (read your writes) and in fresh() (read everyone's writes).
 */
import { parseKey } from './etcd-keys.js';
import type { AttachmentRecord, CatalogChange, SnapshotRecord, VolumeFilter, VolumeRecord } from './catalog.js';
import type { FenceRecord, PreemptRecord } from '../types.js';
import type { NodeRecord } from './nodes.js';

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

interface Waiter {
  readonly rev: number;
  readonly resolve: (reached: boolean) => void;
}

export class EtcdView {
  readonly #volumes = new Map<string, VolumeRecord>();
  readonly #names = new Map<string, string>();
  #sorted: VolumeRecord[] | null = null;
  readonly #attachments = new Map<string, Map<string, AttachmentRecord>>();
  readonly #snapshots = new Map<string, SnapshotRecord>();
  readonly #snapshotNames = new Map<string, string>();
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #alive = new Map<string, string>();
  readonly #agents = new Map<string, string>();
  /** Fence records with the exact text etcd holds (a commit compares it: CatalogWriter.expectFence). */
  readonly #fences = new Map<string, { readonly raw: string; readonly rec: FenceRecord }>();
  readonly #preempts = new Map<string, PreemptRecord>();
  readonly #listeners = new Set<(c: CatalogChange) => void>();
  readonly #locks = new Map<string, number>();
  /** Leader candidates (`leader/<lease>`): their node id and create revision; the lowest leads. */
  readonly #leaders = new Map<string, { readonly node: string; readonly createRevision: number }>();
  #revision = 0;
  #waiters: Waiter[] = [];
  readonly #lockGone = new Map<string, Array<() => void>>();

  get revision(): number {
    return this.#revision;
  }

  /** Drops everything (before a full re-list). Waiters stay: the re-list reaches their revision. */
  clear(): void {
    for (const m of [this.#volumes, this.#names, this.#attachments, this.#snapshots, this.#snapshotNames, this.#nodes, this.#alive, this.#agents, this.#fences, this.#preempts]) {
      m.clear();
    }
    this.#sorted = null;
    for (const key of [...this.#locks.keys()]) this.#deleteLock(key);
    if (this.#leaders.size) {
      this.#leaders.clear();
      this.#emit({ kind: 'leader' });
    }
  }

  /** Applies one key's new value (null: deleted). Keys are relative to the prefix. */
  apply(rel: string, value: Buffer | null, createRevision: number): void {
    const k = parseKey(rel);
    const json = <T>(): T | null => (value === null ? null : (JSON.parse(value.toString('utf8')) as T));
    switch (k.kind) {
      case 'volume': {
        const r = json<VolumeRecord>();
        if (r) this.#volumes.set(k.id, Object.freeze(r));
        else this.#volumes.delete(k.id);
        this.#sorted = null;
        return;
      }
      case 'name':
        if (value) this.#names.set(k.name, value.toString('utf8'));
        else this.#names.delete(k.name);
        return;
      case 'attachment': {
        const r = json<AttachmentRecord>();
        let of = this.#attachments.get(k.volumeId);
        if (r) {
          if (!of) this.#attachments.set(k.volumeId, (of = new Map()));
          of.set(k.node, Object.freeze(r));
        } else if (of) {
          of.delete(k.node);
          if (of.size === 0) this.#attachments.delete(k.volumeId);
        }
        this.#emit({ kind: 'attachment', volumeId: k.volumeId, node: k.node, deleted: r === null });
        return;
      }
      case 'snapshot': {
        const r = json<SnapshotRecord>();
        if (r) this.#snapshots.set(k.id, Object.freeze(r));
        else this.#snapshots.delete(k.id);
        return;
      }
      case 'snapshotName':
        if (value) this.#snapshotNames.set(k.name, value.toString('utf8'));
        else this.#snapshotNames.delete(k.name);
        return;
      case 'node': {
        const r = json<NodeRecord>();
        if (r) this.#nodes.set(k.id, Object.freeze(r));
        else this.#nodes.delete(k.id);
        return;
      }
      case 'alive':
        if (value) this.#alive.set(k.id, value.toString('utf8'));
        else this.#alive.delete(k.id);
        this.#emit({ kind: 'liveness', node: k.id });
        return;
      case 'agent':
        if (value) this.#agents.set(k.id, value.toString('utf8'));
        else this.#agents.delete(k.id);
        this.#emit({ kind: 'liveness', node: k.id });
        return;
      case 'fence':
        if (value) this.#fences.set(k.node, { raw: value.toString('utf8'), rec: Object.freeze(json<FenceRecord>()!) });
        else this.#fences.delete(k.node);
        this.#emit({ kind: 'fence', node: k.node });
        return;
      case 'preempt': {
        const r = json<PreemptRecord>();
        if (r) this.#preempts.set(k.volumeId, Object.freeze(r));
        else this.#preempts.delete(k.volumeId);
        this.#emit({ kind: 'preempt', volumeId: k.volumeId });
        return;
      }
      case 'lock':
        if (value) this.#locks.set(k.key, createRevision);
        else this.#deleteLock(k.key);
        return;
      case 'leader':
        if (value) this.#leaders.set(k.key, { node: value.toString('utf8'), createRevision });
        else this.#leaders.delete(k.key);
        this.#emit({ kind: 'leader' });
        return;
      case 'other':
        return;
    }
  }

  /** Marks every revision up to `rev` applied and wakes the waiters it satisfies. */
  advance(rev: number): void {
    if (rev <= this.#revision) return;
    this.#revision = rev;
    if (this.#waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.rev <= rev) w.resolve(true);
      else still.push(w);
    }
    this.#waiters = still;
  }

  /** Resolves true once `rev` is applied, false after `timeoutMs`. */
  reached(rev: number, timeoutMs: number): Promise<boolean> {
    if (rev <= this.#revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter: Waiter = { rev, resolve: (v) => (clearTimeout(timer), resolve(v)) };
      this.#waiters.push(waiter);
    });
  }

  /** Fails every waiter at once (the view was closed). */
  abandonWaiters(): void {
    for (const w of this.#waiters.splice(0)) w.resolve(false);
    for (const cbs of this.#lockGone.values()) for (const cb of cbs) cb();
    this.#lockGone.clear();
  }

  // ---- locks ----

  /** Lock queue keys (relative) under `queue`, with their create revisions. */
  lockQueue(queue: string): Array<{ key: string; createRevision: number }> {
    const out: Array<{ key: string; createRevision: number }> = [];
    for (const [key, createRevision] of this.#locks) if (key.startsWith(queue)) out.push({ key, createRevision });
    return out.sort((a, b) => a.createRevision - b.createRevision);
  }

  /** Leader candidates, oldest first: the first one leads (election.ts). */
  leaderQueue(): Array<{ key: string; node: string; createRevision: number }> {
    return [...this.#leaders].map(([key, e]) => ({ key, ...e })).sort((a, b) => a.createRevision - b.createRevision);
  }

  hasLock(key: string): boolean {
    return this.#locks.has(key);
  }

  /** Calls `cb` once when the lock key is deleted (at once when it is not there). */
  onLockGone(key: string, cb: () => void): () => void {
    if (!this.#locks.has(key)) {
      cb();
      return () => undefined;
    }
    const list = this.#lockGone.get(key) ?? [];
    list.push(cb);
    this.#lockGone.set(key, list);
    return () => {
      const l = this.#lockGone.get(key);
      if (!l) return;
      const i = l.indexOf(cb);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.#lockGone.delete(key);
    };
  }

  #deleteLock(key: string): void {
    this.#locks.delete(key);
    const cbs = this.#lockGone.get(key);
    if (!cbs) return;
    this.#lockGone.delete(key);
    for (const cb of cbs) cb();
  }

  // ---- reads ----

  getVolume(id: string): VolumeRecord | null {
    return this.#volumes.get(id) ?? null;
  }

  getVolumeByName(name: string): VolumeRecord | null {
    const id = this.#names.get(name);
    const byId = id === undefined ? undefined : this.#volumes.get(id);
    if (byId) return byId;
    // The name key and the record come in one transaction; a lookup by scan covers a view mid-batch.
    for (const v of this.#volumes.values()) if (v.name === name) return v;
    return null;
  }

  listVolumes(filter: VolumeFilter = {}): VolumeRecord[] {
    this.#sorted ??= [...this.#volumes.values()].sort(byName);
    const labels = Object.entries(filter.labels ?? {});
    if (filter.backend === undefined && filter.status === undefined && labels.length === 0) return this.#sorted.slice();
    return this.#sorted.filter((v) =>
      (filter.backend === undefined || v.backend === filter.backend) &&
      (filter.status === undefined || v.status === filter.status) &&
      labels.every(([k, val]) => Object.hasOwn(v.labels, k) && v.labels[k] === val));
  }

  countVolumes(): number {
    return this.#volumes.size;
  }

  listAttachments(volumeId?: string): AttachmentRecord[] {
    const sortNode = (a: AttachmentRecord, b: AttachmentRecord) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
    if (volumeId !== undefined) return [...(this.#attachments.get(volumeId)?.values() ?? [])].sort(sortNode);
    const out: AttachmentRecord[] = [];
    for (const of of this.#attachments.values()) out.push(...of.values());
    return out.sort((a, b) => (a.volumeId < b.volumeId ? -1 : a.volumeId > b.volumeId ? 1 : sortNode(a, b)));
  }

  getSnapshot(id: string): SnapshotRecord | null {
    return this.#snapshots.get(id) ?? null;
  }

  getSnapshotByName(name: string): SnapshotRecord | null {
    const id = this.#snapshotNames.get(name);
    return id === undefined ? null : (this.#snapshots.get(id) ?? null);
  }

  listSnapshots(filter: { volumeId?: string } = {}): SnapshotRecord[] {
    return [...this.#snapshots.values()]
      .filter((s) => filter.volumeId === undefined || s.volumeId === filter.volumeId)
      .sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : byName(a, b)));
  }

  listNodes(): NodeRecord[] {
    return [...this.#nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The lease (hex) under which the node's daemon is alive, or null. */
  aliveLease(node: string): string | null {
    return this.#alive.get(node) ?? null;
  }

  agentLease(node: string): string | null {
    return this.#agents.get(node) ?? null;
  }

  fence(node: string): FenceRecord | null {
    return this.#fences.get(node)?.rec ?? null;
  }

  /** The exact text etcd holds for the node's fence record (null: none). */
  fenceRaw(node: string): string | null {
    return this.#fences.get(node)?.raw ?? null;
  }

  listFences(): FenceRecord[] {
    return [...this.#fences.values()].map((f) => f.rec).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  preempt(volumeId: string): PreemptRecord | null {
    return this.#preempts.get(volumeId) ?? null;
  }

  /** Subscribes to changes as the watch applies them; returns an unsubscribe. */
  onChange(cb: (c: CatalogChange) => void): () => void {
    this.#listeners.add(cb);
    return () => void this.#listeners.delete(cb);
  }

  #emit(c: CatalogChange): void {
    for (const cb of this.#listeners) {
      try {
        cb(c);
      } catch {
        // a listener's failure is its own (they log); the view goes on
      }
    }
  }
}
