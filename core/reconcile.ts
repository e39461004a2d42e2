/**
 * Reconciliation: make the kernel and the backends match the records, after a crash
 * (kill -9 at any point) or a reboot. Runs at start-up before any frontend is served, and
 * may run again later (it takes each volume's lock).
 *
 * Rules, in order:
 * 1. Intents: 'creating' volumes are rolled back (the caller never got success: release,
 *    backend.delete, drop the row); 'deleting' volumes are rolled forward (release,
 *    backend.delete, drop the row). Same for snapshots.
 * 2. Pending mount references are dropped (their caller never got success); a target they
 *    may already have bound is unbound. An ephemeral volume that no reference holds then
 *    (a crash between its create and its mount, or its unmount and its removal) is removed
 *    (ephemeral.ts).
 * 3. For every other volume, compare the records with backend.inspect:
 *    committed references or local attachment records -> re-establish them (attach, mount,
 *    re-bind missing targets); none -> make sure nothing is mounted or attached (an implicit
 *    attachment without references is released as the last unmount would have).
 * 4. Orphans (ids backend.listPresent() reports with no record at all) are unmounted and
 *    detached but never deleted: data berth cannot account for is kept for a human. One
 *    that holds nothing is removed in embedded mode (backend.discardIfEmpty, atomically: an
 *    empty directory): what a power cut leaves of a plain create whose intent had not
 *    reached the disk (create-ops.ts intentDurability).
 * Every failure is collected in the report instead of aborting the rest.
 *
 * While the daemon serves (periodic passes, config reconcileIntervalMs) a volume whose lock
 * is held is skipped rather than waited for: the operation holding it leaves it consistent,
 * and the next pass looks again.
 *
 * In cluster mode a node reconciles what concerns it: volumes homed here (a backend local to
 * this node), volumes it holds (its attachment, its references), and interrupted creates and
 * removes on shared storage whose lock nobody holds (their node died mid-operation). The
 * catalog lock of each volume is taken without waiting, so a live node's operation is left
 * alone; orphan detection compares with the whole cluster's records.
 */
import { canAttach, type Backend, type BackendRuntimeState } from './backend.js';
import {
  clustered, commit, localAttachment, pathOf, RUNTIME, toBackendVolume, underLocks, type CoreDeps, type OpDeps,
} from './core-deps.js';
import { finishInterrupted } from './create-ops.js';
import { removeIfUnreferenced } from './ephemeral.js';
import { movedAway } from './fencing.js';
import { releaseMovedAway } from './mount-ops.js';
import { isBerthError } from './errors.js';
import { finishInterruptedSnapshot } from './snapshot-ops.js';
import type { MountRefRow, VolumeRow } from './store/store.js';
import { checkTarget } from './target-policy.js';
import { bindTarget, targetRecord, targetState, unbindTarget } from './targets.js';

export interface ReconcileReport {
  /** 'creating' volumes rolled back (names). */
  readonly rolledBack: string[];
  /** 'deleting' volumes rolled forward (names). */
  readonly rolledForward: string[];
  /** Snapshots whose interrupted create/delete was finished (names). */
  readonly snapshotsFinished: string[];
  /** Pending mount references dropped, as "volume/consumer". */
  readonly pendingRefsDropped: string[];
  /** Volumes whose mount / attachment / targets were re-established (names). */
  readonly restored: string[];
  /** Volumes found mounted or attached with no reference, now released (names). */
  readonly released: string[];
  /** Backend objects with no record, unmounted/detached and kept, as "backend/id". */
  readonly orphans: string[];
  /** Backend objects with no record that held nothing, removed (embedded mode), as "backend/id". */
  readonly emptyOrphansRemoved: string[];
  /** Volumes whose data the backend no longer has: marked 'error' (remove still works). */
  readonly missing: string[];
  /** Ephemeral volumes found with no reference, removed (names). */
  readonly ephemeralRemoved: string[];
  /**
   * Cluster mode: volumes this node still used while another node had taken them over (it
   * was fenced, or away): shut down and released here, never written by this node again (names).
   */
  readonly movedAway: string[];
  /** Volumes (and snapshots, as "snapshot <name>") busy with an operation, left for the next pass. */
  readonly skipped: string[];
  readonly errors: { readonly volume: string; readonly message: string }[];
  readonly durationMs: number;
}

export async function reconcile(
  d: CoreDeps,
  opts: { stop?: () => boolean; periodic?: boolean } = {},
): Promise<ReconcileReport> {
  const started = performance.now();
  const r = {
    rolledBack: [] as string[], rolledForward: [] as string[], snapshotsFinished: [] as string[],
    pendingRefsDropped: [] as string[], restored: [] as string[], released: [] as string[], orphans: [] as string[], emptyOrphansRemoved: [] as string[],
    missing: [] as string[], ephemeralRemoved: [] as string[], movedAway: [] as string[], skipped: [] as string[],
    errors: [] as { volume: string; message: string }[],
  };
  /** Runs fn under `key` unless an operation holds it (then the volume is skipped). */
  const underLock = async (key: string, what: string, fn: (od: OpDeps) => Promise<void>) => {
    let lock;
    try {
      lock = await d.catalog.lock(key, { waitMs: 0 });
    } catch (err) {
      if (isBerthError(err) && err.kind === 'Busy') {
        r.skipped.push(what);
        return;
      }
      throw err;
    }
    try {
      await fn(underLocks(d, [lock]));
    } finally {
      await lock.release();
    }
  };
  const fail = (volume: string, err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    r.errors.push({ volume, message });
    d.log.error({ err, volume }, `reconcile: ${volume}: ${message}`);
  };

  for (const row of d.catalog.listVolumes()) {
    if (opts.stop?.()) break;
    if (!concernsThisNode(d, row)) continue;
    await underLock(`vol:${row.name}`, row.name, async (d) => {
      const fresh = d.catalog.getVolume(row.id);
      if (!fresh || !concernsThisNode(d, fresh)) return;
      try {
        if (fresh.status === 'creating' || fresh.status === 'deleting') {
          await dropPendingRefs(d, fresh, r.pendingRefsDropped);
          await finishInterrupted(d, fresh);
          (fresh.status === 'creating' ? r.rolledBack : r.rolledForward).push(fresh.name);
          return;
        }
        await dropPendingRefs(d, fresh, r.pendingRefsDropped);
        if (movedAway(d, fresh)) {
          await releaseMovedAway(d, fresh);
          r.movedAway.push(fresh.name);
          d.log.warn({ volume: fresh.name, holder: d.catalog.listAttachments(fresh.id).map((a) => a.node) }, 'reconcile: the volume moved to another node while this one was away: fenced and released here');
          return;
        }
        if (await removeIfUnreferenced(d, fresh)) {
          r.ephemeralRemoved.push(fresh.name);
          return;
        }
        const state = await checkExists(d, fresh, r.missing);
        if (!state) return;
        const outcome = await converge(d, { ...fresh, status: 'ready' }, state);
        if (outcome === 'restored') r.restored.push(fresh.name);
        if (outcome === 'released') r.released.push(fresh.name);
      } catch (err) {
        fail(fresh.name, err);
      }
    });
  }

  for (const snap of d.catalog.listSnapshots()) {
    if (snap.status === 'ready') continue;
    if (clustered(d) && !snapshotIsHere(d, snap.backend, snap.volumeId)) continue;
    await underLock(`snap:${snap.name}`, `snapshot ${snap.name}`, async (d) => {
      try {
        await finishInterruptedSnapshot(d, snap);
        r.snapshotsFinished.push(snap.name);
      } catch (err) {
        fail(`snapshot ${snap.name}`, err);
      }
    });
  }

  for (const backend of d.backends.values()) {
    if (opts.stop?.()) break;
    try {
      await releaseOrphans(d, backend, r.orphans, r.emptyOrphansRemoved);
    } catch (err) {
      fail(`backend ${backend.name}`, err);
    }
  }

  const report: ReconcileReport = { ...r, durationMs: Math.round(performance.now() - started) };
  const changed = report.missing.length + report.ephemeralRemoved.length + report.movedAway.length + report.rolledBack.length + report.rolledForward.length + report.snapshotsFinished.length +
    report.pendingRefsDropped.length + report.restored.length + report.released.length + report.orphans.length + report.emptyOrphansRemoved.length;
  const line = { op: 'reconcile', ...report };
  if (report.errors.length) d.log.warn(line, 'reconcile finished with errors');
  else if (changed) d.log.info(line, 'reconcile repaired state');
  else {
    // A periodic pass that found nothing to do is not news.
    const quiet = { op: 'reconcile', durationMs: report.durationMs, volumes: d.catalog.countVolumes() };
    if (opts.periodic) d.log.debug(quiet, 'reconcile: state consistent');
    else d.log.info(quiet, 'reconcile: state consistent');
  }
  return report;
}

/**
 * Whether this node has anything to do for the volume. Embedded: every volume. Cluster mode:
 * a volume homed here; one this node holds (attachment or references); an interrupted
 * create or remove on shared storage (finished by whichever node gets its lock first).
 */
function concernsThisNode(d: CoreDeps, row: VolumeRow): boolean {
  if (!clustered(d)) return true;
  if (!d.backends.has(row.backend)) return false;
  if (row.node !== null) return row.node === d.nodeId;
  if (row.status === 'creating' || row.status === 'deleting') return true;
  return localAttachment(d, row.id) !== undefined || d.store.listMountRefs(row.id).length > 0;
}

/** In cluster mode, a snapshot intent is finished where its storage is: shared, or its volume's node. */
function snapshotIsHere(d: CoreDeps, backend: string, volumeId: string): boolean {
  const b = d.backends.get(backend);
  if (!b) return false;
  if (b.capabilities.scope === 'global') return true;
  return d.catalog.getVolume(volumeId)?.node === d.nodeId;
}

/**
 * A ready volume whose data the backend no longer finds is marked 'error' (mounts are
 * refused, remove still works); an 'error' volume whose data is back (a pool mounted
 * late) becomes 'ready' again. Returns whether the volume should be converged.
 */
async function checkExists(d: OpDeps, row: VolumeRow, missing: string[]): Promise<BackendRuntimeState | null> {
  const backend = d.backends.get(row.backend);
  if (!backend) throw new Error(`backend "${row.backend}" is not configured; volume left as recorded`);
  const state = await backend.inspect(toBackendVolume(row));
  if (!state.exists) {
    if (row.status !== 'error') await commit(d, (w) => w.patchVolume(row.id, { status: 'error' }));
    missing.push(row.name);
    d.log.error({ volume: row.name, id: row.id, backend: row.backend }, 'reconcile: the backend has no data for this volume; marked error');
    return null;
  }
  if (row.status === 'error') await commit(d, (w) => w.patchVolume(row.id, { status: 'ready' }));
  return state;
}

/**
 * Drops pending references (their caller never got success), unbinding what they bound:
 * the bind they recorded, or, when a crash came before the record, the bind at the target
 * that shows the volume's path. A target such a reference made is not removed: that it
 * made it was not recorded yet, and a directory berth cannot prove it created stays.
 */
async function dropPendingRefs(d: OpDeps, row: VolumeRow, dropped: string[]): Promise<void> {
  for (const ref of d.store.listMountRefs(row.id)) {
    if (ref.state !== 'pending') continue;
    if (ref.target) await unbindTarget(d.exec, targetRecord(ref, pathOf(d, row.id)));
    d.store.tx(() => d.store.deleteMountRef(row.id, ref.consumer), RUNTIME);
    dropped.push(`${row.name}/${ref.consumer}`);
  }
}

/** Makes one ready volume's runtime state match its records. */
async function converge(d: OpDeps, row: VolumeRow, state: BackendRuntimeState): Promise<'restored' | 'released' | 'unchanged'> {
  const backend = d.backends.get(row.backend)!;
  const bv = toBackendVolume(row);
  const refs = d.store.listMountRefs(row.id);
  let local = localAttachment(d, row.id);
  let changed = false;

  if (refs.length === 0) {
    // Nothing needs it mounted. An implicit attachment is released like a last unmount would.
    if (state.mounted) {
      await backend.unmount(bv);
      changed = true;
    }
    if (local?.implicit) {
      if (canAttach(backend)) await backend.detach(bv);
      await commit(d, (w) => w.deleteAttachment(row.id, d.nodeId), RUNTIME);
      local = undefined;
      changed = true;
    } else if (local && local.path !== null) {
      const kept = { ...local, path: null };
      await commit(d, (w) => w.putAttachment(kept), RUNTIME);
      local = kept;
    }
    if (!local && state.device && canAttach(backend)) {
      await backend.detach(bv);
      changed = true;
    }
    if (local && canAttach(backend)) {
      const { device } = await backend.attach(bv, { node: d.nodeId });
      if (device !== local.device || !state.device) changed = true;
      const next = { ...local, device };
      if (device !== local.device) await commit(d, (w) => w.putAttachment(next), RUNTIME);
    }
    return changed ? 'released' : 'unchanged';
  }

  // References exist: the volume must be attached (if attachable), mounted and bound.
  let device: string | null = local?.device ?? null;
  if (canAttach(backend)) {
    device = (await backend.attach(bv, { node: d.nodeId })).device;
    if (!state.device || state.device !== device) changed = true;
  }
  const before = state.mounted;
  const { path } = await backend.mount(bv, { node: d.nodeId, device });
  if (!before && canAttach(backend)) changed = true;
  const next = local
    ? { ...local, device, path }
    : { volumeId: row.id, node: d.nodeId, device, path, readOnly: false, implicit: true, createdAt: d.now() };
  if (!local || local.device !== device || local.path !== path) {
    await commit(d, (w) => w.putAttachment(next), RUNTIME);
    if (!local || local.path !== path) changed = true;
  }
  for (const ref of refs) {
    if (!ref.target) continue;
    if (await rebindTarget(d, row, ref, path)) changed = true;
  }
  return changed ? 'restored' : 'unchanged';
}

/**
 * Makes a committed reference's target show the volume again (after a reboot, or someone
 * unmounted it), under the same rules as a new mount. A bind recognised by its source but
 * not on record (older berth, a crash between a re-bind and its record) is recorded. A
 * mount berth did not make covering the target is an error: berth stacks nothing on it.
 * Returns whether it bound anything.
 */
async function rebindTarget(d: OpDeps, row: VolumeRow, ref: MountRefRow, path: string): Promise<boolean> {
  // Recognised by what the target must show now: the volume's current path.
  const rec = { ...targetRecord(ref, path), source: path };
  const now = await targetState(rec);
  if (now.state === 'covered') throw now.error;
  if (now.state === 'bound') {
    const m = ref.bindMount;
    if (m === null || m.id !== now.mount.id || m.majorMinor !== now.mount.majorMinor || m.root !== now.mount.root) {
      d.store.tx(() => d.store.setMountRefBinding(row.id, ref.consumer, { targetCreated: ref.targetCreated, bindSource: path, bindMount: now.mount }), RUNTIME);
    }
    return false;
  }
  const target = checkTarget(rec.target, d.targets); // the rules may have changed since the mount
  const bound = await bindTarget(d.exec, path, target, { readOnly: ref.readOnly, file: row.volumeMode === 'block' });
  d.store.tx(() => d.store.setMountRefBinding(row.id, ref.consumer, { targetCreated: ref.targetCreated || bound.created, bindSource: path, bindMount: bound.mount }), RUNTIME);
  return true;
}

/**
 * Unmounts/detaches what the backend has with no record and keeps it; only one that holds
 * nothing at all is removed, in embedded mode (rule 4).
 */
async function releaseOrphans(d: CoreDeps, backend: Backend, orphans: string[], removed: string[]): Promise<void> {
  // Objects first, records second: a create writes its record before the object exists,
  // so a volume created while this runs is never mistaken for an orphan.
  const present = await backend.listPresent();
  if (present.length && clustered(d)) await d.catalog.fresh();
  const known = new Set(d.catalog.listVolumes({ backend: backend.name }).map((v) => v.id));
  for (const id of present) {
    if (known.has(id) || d.catalog.getVolume(id)) continue;
    const bv = { id, name: id, sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const, options: {} };
    const state = await backend.inspect(bv);
    if (state.mounted) await backend.unmount(bv);
    if (state.device && canAttach(backend)) await backend.detach(bv);
    if (!clustered(d) && backend.discardIfEmpty && !state.mounted && !state.device && await backend.discardIfEmpty(bv)) {
      removed.push(`${backend.name}/${id}`);
      d.log.info({ backend: backend.name, id }, 'reconcile: removed an empty backend object with no record (a create a power cut interrupted)');
      continue;
    }
    orphans.push(`${backend.name}/${id}`);
    d.log.warn({ backend: backend.name, id, mounted: state.mounted, device: state.device }, 'reconcile: backend object with no record kept (released from the kernel)');
  }
}

/**
 * One volume, now, as a start-up pass would do it (the caller holds its lock): an interrupted
 * create or remove is finished, pending references dropped, and the kernel made to match the
 * records (attach, mount, re-bind). Run after an operation whose record write failed once
 * its side effects were done (a full state disk): the record is what the caller was told,
 * so the kernel goes back to it, as after a crash at that point. True when it changed anything.
 */
export async function settleVolume(d: OpDeps, row: VolumeRow): Promise<boolean> {
  const dropped: string[] = [];
  await dropPendingRefs(d, row, dropped);
  if (movedAway(d, row)) {
    await releaseMovedAway(d, row);
    return true;
  }
  if (row.status === 'creating' || row.status === 'deleting') {
    await finishInterrupted(d, row);
    return true;
  }
  const missing: string[] = [];
  const state = await checkExists(d, row, missing);
  const outcome = state ? await converge(d, { ...row, status: 'ready' }, state) : 'unchanged';
  return dropped.length > 0 || missing.length > 0 || outcome !== 'unchanged';
}

/**
 * Whether the kernel shows what a committed reference records: the volume's path mounted
 * (attachable filesystems), its device attached (block), its directory there (dir, btrfs),
 * and the reference's target bound to it.
 */
export async function refIsLive(d: CoreDeps, row: VolumeRow, ref: MountRefRow): Promise<boolean> {
  const backend = d.backends.get(row.backend);
  const path = pathOf(d, row.id);
  if (!backend || path === null) return false;
  const state = await backend.inspect(toBackendVolume(row));
  if (!state.exists) return false;
  if (backend.capabilities.attachable && !(row.volumeMode === 'block' ? state.device === path : state.mounted)) return false;
  return ref.target === null || (await targetState({ ...targetRecord(ref, path), source: path })).state === 'bound';
}
