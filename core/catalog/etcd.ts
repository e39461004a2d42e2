/**
 * The cluster catalog on etcd (docs/architecture.md, "The etcd catalog").
 *
 * - The view (etcd-view.ts) holds every key under the prefix, listed at one revision and
 *   kept by one prefix watch that this file re-creates from the view's revision after a
 *   disconnect (and re-lists after a compaction).
 * - A commit is one etcd transaction. It also puts the `epoch` key, so the epoch's mod revision
 *   is always the revision of the last commit: fresh() reads it (one round trip) and waits for
 *   the view to get there. A commit made under a lock compares the lock key's create revision
 *   (the fencing token): a node that lost its lease can never write with the lock it held.
 * - Locks follow etcd's concurrency.Mutex: a key per waiter under `locks/<key>/`, bound to the
 *   node's session lease; the lowest create revision holds the lock; a waiter waits for the
 *   deletion of the key just before its own (seen through the same watch, no watch per lock).
 */
import { BerthError, alreadyExists, busy, internal } from '../errors.js';
import type { Logger } from '../log.js';
import type {
  AttachmentRecord, Catalog, CatalogChange, CatalogLock, CatalogWriter, CommitOptions, FenceRecord, LockOptions, NodeLiveness,
  PreemptRecord, SnapshotRecord, SnapshotStatus, VolumeFilter, VolumePatch, VolumeRecord,
} from './catalog.js';
import type { EtcdConnection } from './etcd-client.js';
import { KEYS } from './etcd-keys.js';
import type { EtcdSession } from './etcd-session.js';
import { EtcdView } from './etcd-view.js';
import { KeyedMutex } from '../locks.js';
import type { Watcher } from 'etcd3';

const PAGE = 1_000;

/** A lock as the etcd catalog compares it in commits (election.ts makes one for leadership). */
export interface EtcdLock extends CatalogLock {
  /** Full key of this holder's queue entry. */
  readonly full: string;
  readonly createRevision: number;
  readonly leaseId: string;
}

/** Recorded writes of one commit, turned into one transaction. */
interface Planned {
  readonly compares: Array<{ key: string; target: 'Version' | 'Create' | 'Mod' | 'Value'; cmp: '==' | '>'; value: number | string }>;
  readonly puts: Array<{ key: string; value: string }>;
  readonly deletes: string[];
  readonly deletePrefixes: string[];
  /** Names of volumes / snapshots this commit creates (for the error when a compare fails). */
  readonly creates: string[];
}

export interface EtcdCatalogOptions {
  readonly conn: EtcdConnection;
  readonly session: EtcdSession;
  readonly log: Logger;
  /** How long a commit waits for the watch to bring its own writes into the view. */
  readonly viewWaitMs?: number;
}

export class EtcdCatalog implements Catalog {
  readonly mode = 'etcd' as const;
  readonly view = new EtcdView();
  readonly #conn: EtcdConnection;
  readonly #session: EtcdSession;
  readonly #log: Logger;
  readonly #viewWaitMs: number;
  #watcher: Watcher | null = null;
  readonly #local = new KeyedMutex(0);
  #closed = false;
  #relisting: Promise<void> | null = null;

  constructor(o: EtcdCatalogOptions) {
    this.#conn = o.conn;
    this.#session = o.session;
    this.#log = o.log;
    this.#viewWaitMs = o.viewWaitMs ?? 5_000;
  }

  #full(rel: string): string {
    return this.#conn.prefix + rel;
  }

  /** Lists everything under the prefix and starts the watch; Unavailable when etcd cannot be reached. */
  async start(): Promise<void> {
    await this.#relist();
  }

  /** Loads the whole prefix at one revision (pages of PAGE keys), then watches from the next one. */
  #relist(): Promise<void> {
    this.#relisting ??= (async () => {
      await this.#stopWatch();
      const prefix = this.#conn.prefix;
      const first = await this.#conn.call('reading the catalog', () =>
        this.#conn.client.getAll().prefix(prefix).sort('Key', 'Ascend').limit(PAGE).exec());
      const rev = Number(first.header.revision);
      this.view.clear();
      let page = first;
      for (;;) {
        for (const kv of page.kvs) this.view.apply(kv.key.toString('utf8').slice(prefix.length), kv.value, Number(kv.create_revision));
        if (!page.more || page.kvs.length === 0) break;
        const last = page.kvs[page.kvs.length - 1]!.key.toString('utf8');
        page = await this.#conn.call('reading the catalog', () =>
          this.#conn.client.getAll().inRange({ start: `${last}\0`, end: prefixEndString(prefix) }).revision(rev)
            .sort('Key', 'Ascend').limit(PAGE).exec());
      }
      this.view.advance(rev);
      this.#watch(rev + 1);
    })().finally(() => {
      this.#relisting = null;
    });
    return this.#relisting;
  }

  #watch(from: number): void {
    if (this.#closed) return;
    const prefix = this.#conn.prefix;
    const watcher = this.#conn.client.watch().prefix(prefix).startRevision(String(from)).watcher();
    this.#watcher = watcher;
    watcher.on('data', (res) => {
      if (this.#watcher !== watcher) return;
      let max = 0;
      for (const ev of res.events) {
        const rev = Number(ev.kv.mod_revision);
        const key = ev.kv.key.toString('utf8').slice(prefix.length);
        this.view.apply(key, String(ev.type).toLowerCase() === 'delete' ? null : ev.kv.value, Number(ev.kv.create_revision));
        if (rev > max) max = rev;
      }
      // A response without events is a progress notification: everything up to its revision is here.
      this.view.advance(res.events.length ? max : Number(res.header.revision));
    });
    watcher.on('disconnected', () => {
      if (this.#watcher !== watcher) return;
      // Resume from what the view has applied (the library's own resume point can run ahead of it).
      this.#watcher = null;
      void watcher.cancel().catch(() => undefined);
      setTimeout(() => this.#watch(this.view.revision + 1), 100).unref();
    });
    watcher.on('error', (err) => {
      if (this.#watcher !== watcher) return;
      this.#watcher = null;
      this.#log.warn({ err: err.message }, 'cluster: catalog watch cancelled; listing the catalog again');
      void this.#relistLater();
    });
  }

  async #relistLater(): Promise<void> {
    for (let delay = 200; !this.#closed; delay = Math.min(delay * 2, 2_000)) {
      try {
        await this.#relist();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  }

  async #stopWatch(): Promise<void> {
    const w = this.#watcher;
    this.#watcher = null;
    if (w) await w.cancel().catch(() => undefined);
  }

  // ---- reads (the view) ----

  getVolume(id: string): VolumeRecord | null {
    return this.view.getVolume(id);
  }
  getVolumeByName(name: string): VolumeRecord | null {
    return this.view.getVolumeByName(name);
  }
  listVolumes(filter?: VolumeFilter): VolumeRecord[] {
    return this.view.listVolumes(filter);
  }
  countVolumes(): number {
    return this.view.countVolumes();
  }
  listAttachments(volumeId?: string): AttachmentRecord[] {
    return this.view.listAttachments(volumeId);
  }
  getSnapshot(id: string): SnapshotRecord | null {
    return this.view.getSnapshot(id);
  }
  getSnapshotByName(name: string): SnapshotRecord | null {
    return this.view.getSnapshotByName(name);
  }
  listSnapshots(filter?: { volumeId?: string }): SnapshotRecord[] {
    return this.view.listSnapshots(filter);
  }
  getFence(node: string): FenceRecord | null {
    return this.view.fence(node);
  }
  listFences(): FenceRecord[] {
    return this.view.listFences();
  }
  getPreempt(volumeId: string): PreemptRecord | null {
    return this.view.preempt(volumeId);
  }
  nodeLiveness(node: string): NodeLiveness | null {
    const rec = this.view.listNodes().find((n) => n.id === node);
    const alive = this.view.aliveLease(node) !== null;
    const agentAlive = this.view.agentLease(node) !== null;
    if (!rec && !alive && !agentAlive) return null;
    return { alive, agentAlive, hasAgent: rec?.fenceAgent === true || agentAlive };
  }
  onChange(cb: (change: CatalogChange) => void): () => void {
    return this.view.onChange(cb);
  }

  /** One linearizable read of the epoch; then the view catches up to the last commit. */
  async fresh(): Promise<void> {
    const res = await this.#conn.call('reading the catalog revision', () => this.#conn.client.get(this.#full(KEYS.epoch)).exec());
    const epoch = res.kvs[0] ? Number(res.kvs[0].mod_revision) : 0;
    await this.#catchUp(epoch, 'reading the catalog');
  }

  async #catchUp(rev: number, what: string): Promise<void> {
    if (await this.view.reached(rev, this.#viewWaitMs)) return;
    throw this.#conn.unavailable(what, new Error(`the catalog watch has not delivered revision ${rev} within ${this.#viewWaitMs} ms`));
  }

  // ---- locks ----

  /**
   * One queue entry per node and key: callers on this node queue in process first (the entry
   * is per lease), then the entry queues in etcd behind other nodes'.
   */
  async lock(key: string, opts: LockOptions): Promise<CatalogLock> {
    const started = Date.now();
    const local = await this.#local.acquire(key, { wait: opts.waitMs > 0, waitMs: opts.waitMs });
    try {
      const lock = await this.#clusterLock(key, { waitMs: Math.max(0, opts.waitMs - (Date.now() - started)) });
      let released = false;
      const held: EtcdLock = {
        ...lock,
        release: async () => {
          if (released) return;
          released = true;
          try {
            await lock.release();
          } finally {
            local();
          }
        },
      };
      return held;
    } catch (err) {
      local();
      throw err;
    }
  }

  async #clusterLock(key: string, opts: LockOptions): Promise<EtcdLock> {
    const leaseId = await this.#session.leaseId();
    const queue = KEYS.lockQueue(key);
    const rel = `${queue}${leaseId}`;
    const full = this.#full(rel);
    // Enter the queue, or find our entry when this lease already has one.
    const res = await this.#conn.call(`locking ${key}`, () =>
      this.#conn.client.if(full, 'Create', '==', 0)
        .then(this.#conn.client.put(full).value('').lease(leaseId))
        .else(this.#conn.client.get(full))
        .commit());
    const createRevision = res.succeeded ? Number(res.header.revision) : Number(res.responses[0]!.response_range!.kvs[0]!.create_revision);
    const lock: EtcdLock = { key, full, createRevision, leaseId, release: () => this.#unlock(full) };
    try {
      // Our own entry and everything before it must be in the view before we judge the queue.
      await this.#catchUp(createRevision, `locking ${key}`);
      const deadline = Date.now() + opts.waitMs;
      for (;;) {
        const before = this.view.lockQueue(queue).filter((e) => e.createRevision < createRevision);
        if (before.length === 0) break;
        const left = deadline - Date.now();
        if (left <= 0 || !(await this.#waitGone(before[before.length - 1]!.key, left))) {
          throw busy(`another operation on "${key.replace(/^[a-z]+:/, '')}" is in progress on another node (waited ${opts.waitMs} ms)`);
        }
      }
      // Everything the holders before us committed is older than the epoch we read now.
      await this.fresh();
      return lock;
    } catch (err) {
      await this.#unlock(full);
      throw err;
    }
  }

  #waitGone(rel: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve(false);
      }, ms);
      const off = this.view.onLockGone(rel, () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async #unlock(full: string): Promise<void> {
    try {
      await this.#conn.call('releasing a lock', () => this.#conn.client.delete().key(full).exec());
    } catch (err) {
      // The key is bound to the lease: it goes when the lease does.
      this.#log.warn({ err: err instanceof Error ? err.message : String(err), key: full }, 'cluster: could not release a lock; it expires with the node lease');
    }
  }

  // ---- writes ----

  async commit(fn: (w: CatalogWriter) => void, opts: CommitOptions = {}): Promise<void> {
    const plan = this.#plan(fn);
    if (plan.puts.length + plan.deletes.length + plan.deletePrefixes.length === 0) {
      opts.local?.(); // nothing for the cluster: node facts need no fencing
      return;
    }
    const locks = (opts.lock === undefined || opts.lock === null ? [] : Array.isArray(opts.lock) ? opts.lock : [opts.lock]) as EtcdLock[];
    const c = this.#conn.client;
    let txn = c.if(this.#full(KEYS.epoch), 'Version', '>', -1);
    for (const lock of locks) txn = txn.and(lock.full, 'Create', '==', lock.createRevision);
    for (const cmp of plan.compares) txn = txn.and(this.#full(cmp.key), cmp.target, cmp.cmp, cmp.value);
    const ops = [
      ...plan.puts.map((p) => c.put(this.#full(p.key)).value(p.value)),
      ...plan.deletes.map((k) => c.delete().key(this.#full(k))),
      ...plan.deletePrefixes.map((k) => c.delete().prefix(this.#full(k))),
      c.put(this.#full(KEYS.epoch)).value(''),
    ];
    const res = await this.#conn.call('writing the catalog', () => txn.then(...ops).commit());
    if (!res.succeeded) throw await this.#whyFailed(plan, locks);
    const rev = Number(res.header.revision);
    if (!(await this.view.reached(rev, this.#viewWaitMs))) {
      this.#log.warn({ revision: rev }, 'cluster: a commit is not in the view yet (watch behind); reads may lag');
    }
    opts.local?.();
  }

  async #whyFailed(plan: Planned, locks: readonly EtcdLock[]): Promise<BerthError> {
    for (const lock of locks) {
      const held = await this.#conn.call('checking a lock', () => this.#conn.client.get(lock.full).exec()).catch(() => null);
      const kv = held?.kvs[0];
      if (!kv || Number(kv.create_revision) !== lock.createRevision) {
        return new BerthError('Unavailable', `lost the cluster lock on "${lock.key}" (the node lease expired); nothing was written`);
      }
    }
    if (plan.creates.length) return alreadyExists(`${plan.creates.join(', ')} already exists (created on another node)`);
    return busy('the catalog changed under this operation (another node wrote first, or a node came back); retry');
  }

  /** Turns the writer calls into compares, puts and deletes against the current view. */
  #plan(fn: (w: CatalogWriter) => void): Planned {
    const p: Planned = { compares: [], puts: [], deletes: [], deletePrefixes: [], creates: [] };
    const put = (key: string, value: unknown) => p.puts.push({ key, value: typeof value === 'string' ? value : JSON.stringify(value) });
    const pendingVolumes = new Map<string, VolumeRecord>();
    const volume = (id: string) => pendingVolumes.get(id) ?? this.view.getVolume(id);
    const pendingSnaps = new Map<string, SnapshotRecord>();
    const snapshot = (id: string) => pendingSnaps.get(id) ?? this.view.getSnapshot(id);
    const w: CatalogWriter = {
      createVolume: (r) => {
        p.compares.push({ key: KEYS.name(r.name), target: 'Version', cmp: '==', value: 0 });
        p.compares.push({ key: KEYS.volume(r.id), target: 'Version', cmp: '==', value: 0 });
        p.creates.push(`volume "${r.name}"`);
        pendingVolumes.set(r.id, r);
        put(KEYS.volume(r.id), r);
        put(KEYS.name(r.name), r.id);
      },
      patchVolume: (id, patch: VolumePatch) => {
        const cur = volume(id);
        if (!cur) throw internal(`catalog: no volume ${id} to change`);
        const next = { ...cur, ...patch };
        pendingVolumes.set(id, next);
        if (!p.creates.length) p.compares.push({ key: KEYS.volume(id), target: 'Version', cmp: '>', value: 0 });
        put(KEYS.volume(id), next);
      },
      deleteVolume: (id) => {
        const cur = volume(id);
        p.deletes.push(KEYS.volume(id));
        if (cur) p.deletes.push(KEYS.name(cur.name));
        p.deletePrefixes.push(KEYS.attachmentsOf(id));
      },
      putAttachment: (a) => put(KEYS.attachment(a.volumeId, a.node), a),
      deleteAttachment: (volumeId, node) => p.deletes.push(KEYS.attachment(volumeId, node)),
      createSnapshot: (r) => {
        p.compares.push({ key: KEYS.snapshotName(r.name), target: 'Version', cmp: '==', value: 0 });
        p.creates.push(`snapshot "${r.name}"`);
        pendingSnaps.set(r.id, r);
        put(KEYS.snapshot(r.id), r);
        put(KEYS.snapshotName(r.name), r.id);
      },
      setSnapshotStatus: (id, status: SnapshotStatus) => {
        const cur = snapshot(id);
        if (!cur) throw internal(`catalog: no snapshot ${id} to change`);
        const next = { ...cur, status };
        pendingSnaps.set(id, next);
        put(KEYS.snapshot(id), next);
      },
      deleteSnapshot: (id) => {
        const cur = snapshot(id);
        p.deletes.push(KEYS.snapshot(id));
        if (cur) p.deletes.push(KEYS.snapshotName(cur.name));
      },
      putFence: (r) => put(KEYS.fence(r.node), r),
      deleteFence: (node) => p.deletes.push(KEYS.fence(node)),
      putPreempt: (r) => put(KEYS.preempt(r.volumeId), r),
      deletePreempt: (volumeId) => p.deletes.push(KEYS.preempt(volumeId)),
      expectNodeDown: (node) => {
        p.compares.push({ key: KEYS.alive(node), target: 'Version', cmp: '==', value: 0 });
        p.compares.push({ key: KEYS.agent(node), target: 'Version', cmp: '==', value: 0 });
      },
      expectFence: (r) => {
        const seen = this.view.fence(r.node);
        const raw = seen && JSON.stringify(seen) === JSON.stringify(r) ? this.view.fenceRaw(r.node)! : JSON.stringify(r);
        p.compares.push({ key: KEYS.fence(r.node), target: 'Value', cmp: '==', value: raw });
      },
    };
    fn(w);
    return p;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stopWatch();
    this.view.abandonWaiters();
  }
}

function prefixEndString(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}
