/**
 * The core VolumeService: the one place where state changes.
 *
 * Locking rule: every public method that changes or depends on a volume's state takes the
 * per-volume lock (key "vol:<name>", snapshots "snap:<name>") through `#locked`, re-reads
 * the records under it, and only then acts; the helpers in create-ops / mount-ops /
 * snapshot-ops assume the lock is held. Several keys are taken in sorted order.
 *
 * Durability rule: before a side effect, an intent is written to the store ('creating' /
 * 'deleting' status, pending mount reference); after it, the record is committed.
 * reconcile.ts replays leftover intents at start-up. Input is validated before any lock is
 * taken or any state changes.
 *
 * Full state disk rule (settling.ts): a volume whose operation failed with ResourceExhausted
 * is settled at once under its lock, so its records and the kernel agree again; one that
 * cannot be settled yet is settled before the next operation on it, or its path, is answered.
 *
 * Every public call goes through `#op`, which writes one structured log line (frontend, op,
 * volume, durationMs, outcome) and emits one OpRecord to the observer.
 */
import type { Backend } from './backend.js';
import {
  clustered, findSnapshotRow, findVolumeRow, loadVolume, pathOf, toSnapshot, toVolume, underLocks, type CoreDeps, type OpDeps,
} from './core-deps.js';
import type { Catalog, CatalogLock } from './catalog/catalog.js';
import type { ClusterBaseStatus, ClusterStatus, NodeStatus } from './catalog/nodes.js';
import { fenceNode, moveVolume, preempt, unfenceNode } from './cluster-ops.js';
import { HeldElsewhere, isPreemptible } from './fencing.js';
import { NodeGuard } from './node-guard.js';
import { ClusterLeader, type Leadership, type SweepReport } from './leader.js';
import type { FenceRecord } from './types.js';
import { SqliteCatalog } from './catalog/sqlite.js';
import { createVolume, removeVolume } from './create-ops.js';
import { ephemeralCreate, isEphemeral, mountEphemeral, removeIfUnreferenced } from './ephemeral.js';
import type { CheckedCreate } from './create-ops.js';
import { asBerthError, busy, failedPrecondition, invalidArgument, notFound } from './errors.js';
import { clip, truncate } from './user-input.js';
import { createIdGenerator } from './ids.js';
import type { Logger } from './log.js';
import { attachVolume, detachVolume, mountVolume, unmountVolume } from './mount-ops.js';
import type { OpObserver } from './observe.js';
import type { Exec } from './os/exec.js';
import { reconcile, type ReconcileReport } from './reconcile.js';
import { Settling } from './settling.js';
import type {
  AttachRequest, CreateSnapshotRequest, CreateVolumeRequest, ExpandRequest, ExpandResponse, ListSnapshotsFilter,
  ListVolumesFilter, MountRequest, MountResponse, OpContext, RemoveVolumeRequest, ServiceStatus, UnmountRequest, VolumeService,
} from './service.js';
import { createSnapshot, deleteSnapshot, expandVolume } from './snapshot-ops.js';
import { checkCreate, requireConsumer, requireNode, requireRef } from './request-checks.js';
import { parseSize, validateLabels, validateVolumeName } from './spec.js';
import type { Config } from './config.js';
import type { Store, VolumeRow } from './store/store.js';
import type { AttachmentRow, MountRefRow } from './store/store.js';
import type { BackendInfo, Capacity, Frontend, Snapshot, Volume, VolumeStats } from './types.js';

export type CoreVolumeService = VolumeService & {
  /** Compares records with the backends and the kernel and repairs the difference. */
  reconcile(): Promise<ReconcileReport>;
  /** Cluster mode: call when the node got a new lease after losing it (etcd back). */
  rejoined(): void;
  /** Cluster mode: one pass of the leader's cluster-wide work now, if this node leads (else null; core/leader.ts). */
  sweep(): Promise<SweepReport | null>;
  /** Waits (bounded) for running operations, then closes the store. */
  close(): Promise<void>;
};

export interface VolumeServiceDeps {
  readonly config: Pick<Config, 'nodeId' | 'stateRoot' | 'defaultBackend' | 'lockWaitMs' | 'targets'> & Partial<Pick<Config, 'reconcileIntervalMs'>>;
  /** This node's SQLite (node facts; in single-node mode also the catalog). */
  readonly store: Store;
  /** The cluster catalog (cluster mode: etcd); default: the embedded one over `store`. */
  readonly catalog?: Catalog;
  /** Cluster mode: the membership, status and lease clock of this node (core/catalog/cluster.ts). */
  readonly cluster?: {
    nodes(): NodeStatus[];
    status(): ClusterBaseStatus;
    sinceRenewal(): number;
    renewNow?(): Promise<void>;
    readonly selfFenceMs: number;
    /** The leader election (core/catalog/election.ts): the leader sweeps (core/leader.ts). */
    readonly election?: Leadership;
  };
  readonly backends: Map<string, Backend>;
  readonly exec: Exec;
  readonly log: Logger;
  readonly version: string;
  readonly observer?: OpObserver;
  readonly clock?: () => Date;
}

/** Read-only operations log at debug: Docker and kubelet poll them constantly. */
const READ_OPS = new Set(['inspect', 'list', 'path', 'stats', 'capacity', 'inspectSnapshot', 'listSnapshots']);

const NO_ROWS: readonly never[] = [];

/** How much of an error message the op line keeps (messages embed user input). */
const LOGGED_MESSAGE_CHARS = 512;

/** Up to this many volumes, list reads each one's attachments / references by index. */
const FEW_VOLUMES = 32;

const volKey = (name: string) => `vol:${name}`;
const snapKey = (name: string) => `snap:${name}`;

class CoreService implements CoreVolumeService {
  readonly nodeId: string;
  readonly #d: CoreDeps;
  readonly #lockWaitMs: number;
  readonly #cluster: VolumeServiceDeps['cluster'];
  /** Cluster mode: fence orders, preemptions, takeovers and self-fencing (node-guard.ts). */
  readonly #guard: NodeGuard | null;
  /** Cluster mode: the cluster-wide work this node does while it leads (leader.ts). */
  readonly #leader: ClusterLeader | null;
  readonly #defaultBackend: string;
  readonly #version: string;
  readonly #observer: OpObserver | undefined;
  readonly #startedAt: string;
  #ready = false;
  /** The running reconcile pass (start-up or periodic): never two at once, awaited by close(). */
  #reconciling: Promise<ReconcileReport> | null = null;
  #reconcileTimer: NodeJS.Timeout | null = null;
  readonly #reconcileIntervalMs: number;
  #closed = false;
  #inFlight = 0;
  readonly #settling: Settling;

  constructor(deps: VolumeServiceDeps) {
    const clock = deps.clock ?? (() => new Date());
    this.nodeId = deps.config.nodeId;
    this.#d = {
      catalog: deps.catalog ?? new SqliteCatalog(deps.store),
      store: deps.store,
      backends: deps.backends,
      exec: deps.exec,
      log: deps.log,
      nodeId: deps.config.nodeId,
      stateRoot: deps.config.stateRoot,
      targets: { stateRoot: deps.config.stateRoot, allowedPrefixes: deps.config.targets.allowedPrefixes },
      now: () => clock().toISOString(),
      newId: createIdGenerator(clock),
      idleViews: new WeakMap(),
    };
    this.#lockWaitMs = deps.config.lockWaitMs;
    this.#cluster = deps.cluster;
    const cluster = deps.cluster;
    this.#guard = cluster
      ? new NodeGuard({
        d: this.#d,
        lock: (keys) => this.#lockAll(keys, undefined),
        sinceRenewal: () => cluster.sinceRenewal(),
        renewNow: () => cluster.renewNow?.() ?? Promise.resolve(),
        selfFenceMs: cluster.selfFenceMs,
        endpoints: () => {
          const st = cluster.status();
          return st.mode === 'etcd' ? st.endpoints : [];
        },
      })
      : null;
    this.#leader = cluster?.election ? new ClusterLeader({ d: this.#d, leadership: cluster.election }) : null;
    this.#settling = new Settling(this.#d);
    this.#defaultBackend = deps.config.defaultBackend;
    this.#version = deps.version;
    this.#observer = deps.observer;
    this.#startedAt = clock().toISOString();
    this.#reconcileIntervalMs = deps.config.reconcileIntervalMs ?? 0;
  }

  /**
   * Logs + observes one operation; wraps non-Berth errors as Internal (logged with stack).
   * `ref` is what the caller sent, unchecked: the line carries it clipped (clip()).
   */
  async #op<T>(op: string, ctx: OpContext | undefined, ref: unknown, fn: () => Promise<T>): Promise<T> {
    const frontend = ctx?.frontend ?? 'core';
    const volume = typeof ref === 'string' ? clip(ref) : null;
    const started = performance.now();
    this.#inFlight++;
    let outcome: 'ok' | ReturnType<typeof asBerthError>['kind'] = 'ok';
    let error: string | undefined;
    try {
      if (this.#closed) throw failedPrecondition('the volume service is shutting down');
      return await fn();
    } catch (err) {
      const be = asBerthError(err);
      outcome = be.kind;
      error = truncate(be.message, LOGGED_MESSAGE_CHARS);
      if (be.kind === 'Internal') this.#d.log.error({ err, frontend, op, volume }, `${op} failed: ${be.message}`);
      throw be;
    } finally {
      this.#inFlight--;
      const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
      const line = error === undefined ? { frontend, op, volume, durationMs, outcome } : { frontend, op, volume, durationMs, outcome, error };
      if (READ_OPS.has(op) && outcome === 'ok') this.#d.log.debug(line, 'op');
      else this.#d.log.info(line, 'op');
      try {
        this.#observer?.({ frontend, op, volume, durationMs, outcome });
      } catch (obsErr) {
        this.#d.log.warn({ err: obsErr }, 'op observer threw');
      }
    }
  }

  /**
   * Takes the catalog locks of `keys` in sorted order (the process mutex, and in cluster mode
   * the cluster lock whose fencing token every write of the operation carries). With
   * ctx.wait false, Busy at once when one is held.
   */
  async #lockAll(keys: readonly string[], ctx: OpContext | undefined): Promise<{ od: OpDeps; release: () => Promise<void> }> {
    const waitMs = ctx?.wait === false ? 0 : this.#lockWaitMs;
    const held: CatalogLock[] = [];
    const release = async () => {
      for (const l of held.splice(0).reverse()) await l.release();
    };
    try {
      for (const key of [...new Set(keys)].sort()) held.push(await this.#d.catalog.lock(key, { waitMs }));
    } catch (err) {
      await release();
      throw err;
    }
    return { od: underLocks(this.#d, [...held]), release };
  }

  /**
   * Resolves `ref` to a volume, takes its lock, re-reads it and runs fn with the fresh row.
   * The volume can vanish while we wait for the lock: that is NotFound.
   */
  async #locked<T>(ref: string, ctx: OpContext | undefined, fn: (row: VolumeRow, d: OpDeps) => Promise<T>): Promise<T> {
    const first = await this.#find(ref);
    const { od, release } = await this.#lockAll([volKey(first.name)], ctx);
    try {
      // Re-resolve by the caller's ref: the volume may have been removed (or removed and
      // made again under the same name) while we waited.
      let row = findVolumeRow(od, ref);
      if (!row) throw notFound(`volume "${ref}" does not exist`);
      if (row.name !== first.name) throw busy(`volume "${ref}" changed while waiting; retry`);
      if (this.#settling.pending(row.id)) {
        await this.#settling.settle(od, row);
        row = od.catalog.getVolume(row.id);
        if (!row) throw notFound(`volume "${ref}" does not exist`);
      }
      try {
        return await fn(row, od);
      } catch (err) {
        await this.#settling.after(od, err, row.id);
        throw err;
      }
    } finally {
      await release();
    }
  }

  /**
   * The volume `ref` names, NotFound if none. In cluster mode a miss asks the catalog once
   * more after catching up (it may have been made on another node a moment ago).
   */
  async #find(ref: string): Promise<VolumeRow> {
    const row = await this.#lookUp(ref);
    if (!row) throw notFound(`volume "${ref}" does not exist`);
    return row;
  }

  /** The volume `ref` names or null; in cluster mode a miss looks again after catching up. */
  async #lookUp(ref: string): Promise<VolumeRow | null> {
    const row = findVolumeRow(this.#d, ref);
    if (row || !clustered(this.#d)) return row;
    await this.#d.catalog.fresh();
    return findVolumeRow(this.#d, ref);
  }

  /** Reads see every commit made anywhere before them (cluster mode: one round trip to etcd). */
  async #fresh(): Promise<void> {
    if (clustered(this.#d)) await this.#d.catalog.fresh();
  }

  create(req: CreateVolumeRequest, ctx: OpContext): Promise<Volume> {
    return this.#op('create', ctx, typeof req?.name === 'string' ? req.name : null, async () => {
      const checked = checkCreate(req);
      const keys = [volKey(checked.name)];
      // Hold the source too, so it cannot be removed / deleted while it is being copied.
      if (checked.source?.kind === 'volume') {
        const src = findVolumeRow(this.#d, checked.source.ref);
        if (src) keys.push(volKey(src.name));
      } else if (checked.source?.kind === 'snapshot') {
        const snap = findSnapshotRow(this.#d, checked.source.ref);
        if (snap) keys.push(snapKey(snap.name));
      }
      const { od, release } = await this.#lockAll(keys, ctx);
      try {
        return await createVolume(od, checked, this.#defaultBackend, safeProgress(ctx?.onProgress, this.#d.log));
      } catch (err) {
        // A 'creating' row left by a failed final write is rolled back now (its caller never got success).
        const row = od.catalog.getVolumeByName(checked.name);
        if (row?.status === 'creating') await this.#settling.after(od, err, row.id);
        throw err;
      } finally {
        await release();
      }
    });
  }

  inspect(ref: string, ctx: OpContext): Promise<Volume> {
    return this.#op('inspect', ctx, ref, async () => {
      requireRef(ref);
      await this.#fresh();
      return loadVolume(this.#d, await this.#find(ref));
    });
  }

  find(ref: string): Volume | null {
    if (typeof ref !== 'string' || ref.length === 0) return null;
    const row = findVolumeRow(this.#d, ref);
    return row ? loadVolume(this.#d, row) : null;
  }

  async findFresh(ref: string): Promise<Volume | null> {
    if (typeof ref !== 'string' || ref.length === 0) return null;
    const row = await this.#lookUp(ref);
    return row ? loadVolume(this.#d, row) : null;
  }

  list(filter: ListVolumesFilter, ctx: OpContext): Promise<Volume[]> {
    return this.#op('list', ctx, null, async () => {
      const f = filter ?? {};
      const labels = validateLabels(f.labels, 'labels');
      if (f.backend !== undefined && typeof f.backend !== 'string') throw invalidArgument('backend', 'must be a backend name');
      // A mistyped filter would otherwise list nothing and look like "no volumes".
      if (f.backend && !this.#d.backends.has(f.backend)) {
        throw invalidArgument('backend', `unknown backend "${clip(f.backend)}" (configured: ${[...this.#d.backends.keys()].join(', ') || 'none'})`);
      }
      await this.#fresh();
      const rows = this.#d.catalog.listVolumes({ ...(f.backend ? { backend: f.backend } : {}), labels });
      // A few volumes (a label or backend filter): two indexed queries each. Many: two
      // queries for every attachment / reference instead of two per volume.
      if (rows.length <= FEW_VOLUMES) return rows.map((r) => loadVolume(this.#d, r));
      const atts = groupBy(this.#d.catalog.listAttachments());
      const refs = groupBy(this.#d.store.listMountRefs());
      return rows.map((r) => toVolume(r, atts.get(r.id) ?? NO_ROWS, refs.get(r.id) ?? NO_ROWS, this.#d.nodeId, this.#d.idleViews));
    });
  }

  remove(req: RemoveVolumeRequest, ctx: OpContext): Promise<void> {
    return this.#op('remove', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      await this.#locked(ref, ctx, (row, d) => removeVolume(d, row, req.force === true));
    });
  }

  attach(req: AttachRequest, ctx: OpContext): Promise<Volume> {
    return this.#op('attach', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      const node = requireNode(req.node, this.nodeId);
      return this.#locked(ref, ctx, async (row, d) => {
        await attachVolume(d, row, { node, readOnly: req.readOnly === true, implicit: false });
        return loadVolume(d, d.catalog.getVolume(row.id)!);
      });
    });
  }

  detach(req: { ref: string; node?: string }, ctx: OpContext): Promise<Volume> {
    return this.#op('detach', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      const node = requireNode(req.node, this.nodeId);
      return this.#locked(ref, ctx, async (row, d) => {
        await detachVolume(d, row, node);
        return loadVolume(d, d.catalog.getVolume(row.id)!);
      });
    });
  }

  mount(req: MountRequest, ctx: OpContext): Promise<MountResponse> {
    return this.#op('mount', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      requireConsumer(req.consumer);
      if (req.ephemeral !== undefined && req.ephemeral !== null) {
        const spec = ephemeralCreate(checkCreate({ ...req.ephemeral, name: ref }));
        const { od, release } = await this.#lockAll([volKey(spec.name)], ctx);
        try {
          return await this.#mountEphemeral(od, spec, req, ctx?.frontend ?? 'core');
        } finally {
          await release();
        }
      }
      await this.#guard?.checkServing();
      // A single-node volume held by another node: refused, unless the caller (or the volume)
      // asks for preemption; then the holder gives it up (fencing its copy) and this retries.
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.#locked(ref, ctx, async (row, d) =>
            mountVolume(d, await this.#settling.liveMount(d, row, req.consumer), req, ctx?.frontend ?? 'core'));
        } catch (err) {
          if (!(err instanceof HeldElsewhere) || !err.movable || attempt > 0) throw err;
          const row = this.#d.catalog.getVolume(err.volumeId);
          if (!row || !(req.preempt === true || isPreemptible(row))) throw err;
          if (!(await preempt(this.#d, row, err.holder, this.#lockWaitMs))) {
            throw new HeldElsewhere(`${err.message} (preemption asked; node "${err.holder}" did not give it up within ${this.#lockWaitMs} ms)`, err.volumeId, err.holder, false);
          }
        }
      }
    });
  }

  /**
   * An ephemeral mount, the name's lock held: the volume may not exist yet (ephemeral.ts); one
   * that does gets #locked's settling (pending first, a retried mount re-established).
   */
  async #mountEphemeral(od: OpDeps, spec: CheckedCreate, req: MountRequest, frontend: Frontend): Promise<MountResponse> {
    const existing = od.catalog.getVolumeByName(spec.name);
    if (existing && isEphemeral(existing)) {
      if (this.#settling.pending(existing.id)) await this.#settling.settle(od, existing);
      await this.#settling.liveMount(od, od.catalog.getVolume(existing.id) ?? existing, req.consumer);
    }
    try {
      return await mountEphemeral(od, spec, req, frontend, this.#defaultBackend);
    } catch (err) {
      const row = od.catalog.getVolumeByName(spec.name);
      if (row) await this.#settling.after(od, err, row.id);
      throw err;
    }
  }

  unmount(req: UnmountRequest, ctx: OpContext): Promise<Volume> {
    return this.#op('unmount', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      const consumer = requireConsumer(req.consumer);
      return this.#locked(ref, ctx, async (row, d) => {
        await unmountVolume(d, row, consumer);
        return (await removeIfUnreferenced(d, row)) ?? loadVolume(d, d.catalog.getVolume(row.id)!);
      });
    });
  }

  path(ref: string, ctx: OpContext): Promise<string | null> {
    return this.#op('path', ctx, ref, async () => {
      const row = await this.#find(requireRef(ref));
      if (!this.#settling.pending(row.id)) return pathOf(this.#d, row.id);
      // Its record may name a path the kernel no longer has: settled first (#locked).
      return this.#locked(ref, ctx, async (r, d) => pathOf(d, r.id));
    });
  }

  expand(req: ExpandRequest, ctx: OpContext): Promise<ExpandResponse> {
    return this.#op('expand', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      const size = parseSize(req.sizeBytes, 'size');
      return this.#locked(ref, ctx, (row, d) => expandVolume(d, row, size));
    });
  }

  stats(ref: string, ctx: OpContext): Promise<VolumeStats> {
    return this.#op('stats', ctx, ref, async () => {
      const row = await this.#find(requireRef(ref));
      const backend = this.#d.backends.get(row.backend);
      if (!backend) throw failedPrecondition(`volume "${row.name}" lives on backend "${row.backend}", which is not configured`);
      return backend.stats({ id: row.id, name: row.name, sizeBytes: row.sizeBytes, fsType: row.fsType, volumeMode: row.volumeMode, options: row.options });
    });
  }

  createSnapshot(req: CreateSnapshotRequest, ctx: OpContext): Promise<Snapshot> {
    return this.#op('createSnapshot', ctx, req?.name ?? null, async () => {
      const name = validateVolumeName(req?.name, 'name');
      const volRef = requireRef(req.volume, 'volume');
      const vol = await this.#find(volRef);
      const { od, release } = await this.#lockAll([volKey(vol.name), snapKey(name)], ctx);
      try {
        const fresh = od.catalog.getVolume(vol.id);
        if (!fresh) throw notFound(`volume "${volRef}" does not exist`);
        return await createSnapshot(od, name, fresh, safeProgress(ctx?.onProgress, this.#d.log));
      } finally {
        await release();
      }
    });
  }

  inspectSnapshot(ref: string, ctx: OpContext): Promise<Snapshot> {
    return this.#op('inspectSnapshot', ctx, ref, async () => {
      requireRef(ref);
      await this.#fresh();
      const row = findSnapshotRow(this.#d, ref);
      if (!row) throw notFound(`snapshot "${ref}" does not exist`);
      return toSnapshot(row);
    });
  }

  listSnapshots(filter: ListSnapshotsFilter, ctx: OpContext): Promise<Snapshot[]> {
    return this.#op('listSnapshots', ctx, filter?.volume ?? null, async () => {
      await this.#fresh();
      if (filter?.volume === undefined) return this.#d.catalog.listSnapshots().map(toSnapshot);
      const vol = findVolumeRow(this.#d, requireRef(filter.volume, 'volume'));
      // Snapshots outlive their volume: an id that no longer resolves still filters by id.
      return this.#d.catalog.listSnapshots({ volumeId: vol?.id ?? filter.volume }).map(toSnapshot);
    });
  }

  deleteSnapshot(ref: string, ctx: OpContext): Promise<void> {
    return this.#op('deleteSnapshot', ctx, ref, async () => {
      requireRef(ref);
      await this.#fresh();
      const first = findSnapshotRow(this.#d, ref);
      if (!first) throw notFound(`snapshot "${ref}" does not exist`);
      const { od, release } = await this.#lockAll([snapKey(first.name)], ctx);
      try {
        const row = od.catalog.getSnapshot(first.id);
        if (!row) throw notFound(`snapshot "${ref}" does not exist`);
        await deleteSnapshot(od, row);
      } finally {
        await release();
      }
    });
  }

  capacity(backend: string | undefined, ctx: OpContext): Promise<Capacity[]> {
    return this.#op('capacity', ctx, null, async () => {
      let targets: Backend[];
      if (backend === undefined || backend === null || backend === '') targets = [...this.#d.backends.values()];
      else {
        const b = this.#d.backends.get(backend);
        if (!b) throw notFound(`backend "${clip(backend)}" is not configured (configured: ${[...this.#d.backends.keys()].join(', ')})`);
        targets = [b];
      }
      return Promise.all(targets.map(async (b) => ({ backend: b.name, ...(await b.capacity()) })));
    });
  }

  backends(): BackendInfo[] {
    return [...this.#d.backends.values()].map((b) => ({
      name: b.name, driver: b.driver, capabilities: b.capabilities, settings: b.describe(),
    }));
  }

  status(): ServiceStatus {
    return {
      version: this.#version,
      nodeId: this.nodeId,
      ready: this.#ready && !this.#closed,
      volumes: this.#d.catalog.countVolumes(),
      backends: [...this.#d.backends.keys()],
      startedAt: this.#startedAt,
      cluster: this.#clusterStatus(),
    };
  }

  fenceNode(node: string, ctx: OpContext): Promise<FenceRecord> {
    return this.#op('fenceNode', ctx, node, async () => fenceNode(this.#d, requireNodeId(node)));
  }

  unfenceNode(node: string, ctx: OpContext): Promise<void> {
    return this.#op('unfenceNode', ctx, node, async () => unfenceNode(this.#d, requireNodeId(node)));
  }

  moveVolume(req: { ref: string; to: string }, ctx: OpContext): Promise<Volume> {
    return this.#op('move', ctx, req?.ref ?? null, async () => {
      const ref = requireRef(req?.ref);
      const to = requireNodeId(req.to, 'to');
      return this.#locked(ref, ctx, async (row, d) => {
        await moveVolume(d, row, to);
        return loadVolume(d, d.catalog.getVolume(row.id)!);
      });
    });
  }

  /** Starts the node guard and the leader's sweep (cluster mode), once the first reconcile has settled this node. */
  startGuard(): void {
    this.#guard?.start();
    this.#leader?.start();
  }

  sweep(): Promise<SweepReport | null> {
    return this.#leader ? this.#leader.sweep() : Promise.resolve(null);
  }

  /** Cluster mode: the node has a lease again after losing it (etcd back): release what it fenced, then reconcile. */
  rejoined(): void {
    this.#guard?.rejoined();
    void this.reconcile().catch((err: unknown) => this.#d.log.error({ err }, 'reconcile after rejoining failed'));
  }

  #clusterStatus(): ClusterStatus {
    if (!this.#cluster || !this.#guard) return { mode: 'embedded' };
    const g = this.#guard.status();
    return { ...this.#cluster.status(), selfFenced: g.selfFenced, events: g.events, fences: this.#d.catalog.listFences() };
  }

  nodes(): NodeStatus[] {
    if (this.#cluster) return this.#cluster.nodes();
    const now = new Date().toISOString();
    return [{
      id: this.nodeId, addresses: [], version: this.#version, startedAt: this.#startedAt, lastSeen: now, alive: true, agentAlive: false,
      backends: this.backends().map((b) => ({ name: b.name, driver: b.driver, shared: b.capabilities.scope === 'global' })),
      attachedVolumes: new Set(this.#d.catalog.listAttachments().filter((a) => a.node === this.nodeId).map((a) => a.volumeId)).size,
      fence: null,
      leader: true,
    }];
  }

  /** One pass at a time: a call while a pass runs gets that pass's report. */
  reconcile(periodic = false): Promise<ReconcileReport> {
    this.#reconciling ??= reconcile(this.#d, { stop: () => this.#closed, periodic })
      .then((report) => {
        this.#ready = true;
        this.#settling.reconciled(report);
        // Volumes that moved away while this node was gone: in `berth status`, not only the log.
        this.#guard?.noted(report.movedAway, 'moved-away');
        return report;
      })
      .finally(() => {
        this.#reconciling = null;
      });
    return this.#reconciling;
  }

  /** Schedules the next periodic pass (config reconcileIntervalMs; 0 = none) after this one ends. */
  scheduleReconcile(): void {
    if (this.#reconcileIntervalMs <= 0 || this.#closed) return;
    this.#reconcileTimer = setTimeout(() => {
      this.#reconcileTimer = null;
      if (this.#closed) return;
      this.reconcile(true)
        .catch((err: unknown) => this.#d.log.error({ err }, 'periodic reconcile failed'))
        .finally(() => this.scheduleReconcile());
    }, this.#reconcileIntervalMs);
    this.#reconcileTimer.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#guard?.stop();
    await this.#leader?.stop();
    if (this.#reconcileTimer) clearTimeout(this.#reconcileTimer);
    await this.#reconciling?.catch(() => undefined);
    // Let running operations finish their intent -> commit sequence (bounded).
    const deadline = Date.now() + 30_000;
    while (this.#inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await this.#d.catalog.close();
    this.#d.store.close();
  }
}

/** A node id the caller must give (fence, unfence, move). */
function requireNodeId(node: unknown, field = 'node'): string {
  if (typeof node !== 'string' || node === '') throw invalidArgument(field, 'must name a node of the cluster');
  return requireNode(node, node);
}

/** A progress callback that throws must not fail the copy. */
function safeProgress(cb: OpContext['onProgress'], log: Logger): ((done: number, total: number) => void) | undefined {
  if (!cb) return undefined;
  return (done, total) => {
    try {
      cb(done, total);
    } catch (err) {
      log.warn({ err }, 'progress callback threw');
    }
  };
}

function groupBy<T extends AttachmentRow | MountRefRow>(rows: T[]): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const r of rows) {
    const list = m.get(r.volumeId);
    if (list) list.push(r);
    else m.set(r.volumeId, [r]);
  }
  return m;
}

/**
 * Builds the service and reconciles records with the backends before returning it.
 * @example const svc = await createVolumeService({ config, store, backends, exec, log, version: '0.1.0' });
 */
export async function createVolumeService(deps: VolumeServiceDeps): Promise<CoreVolumeService> {
  const svc = new CoreService(deps);
  await svc.reconcile();
  svc.startGuard();
  svc.scheduleReconcile();
  return svc;
}
