/**
 * Snapshots: create (idempotent by name), delete, plus expand, the other optional ability.
 * Callers hold the locks. Intents as for volumes: a snapshot row is 'creating' before
 * backend.createSnapshot and 'deleting' before backend.deleteSnapshot.
 */
import { backendOf, commit, loadVolume, localAttachment, requireHere, toBackendVolume, toSnapshot, type OpDeps } from './core-deps.js';
import { alreadyExists, failedPrecondition, outOfRange, unsupported } from './errors.js';
import { canExpand, canSnapshot, type Progress } from './backend.js';
import type { ExpandResponse } from './service.js';
import type { SnapshotRow, VolumeRow } from './store/store.js';
import type { Snapshot } from './types.js';

const toBackendSnapshot = (s: SnapshotRow) => ({ id: s.id, volumeId: s.volumeId, sizeBytes: s.sizeBytes });

export async function createSnapshot(d: OpDeps, name: string, vol: VolumeRow, onProgress?: Progress): Promise<Snapshot> {
  let existing = d.catalog.getSnapshotByName(name);
  if (existing && existing.status !== 'ready') {
    await finishInterruptedSnapshot(d, existing);
    existing = null;
  }
  if (existing) {
    if (existing.volumeId !== vol.id) {
      throw alreadyExists(`snapshot "${name}" already exists for another volume (${existing.volumeId})`);
    }
    return toSnapshot(existing);
  }
  if (vol.status !== 'ready') throw failedPrecondition(`volume "${vol.name}" is ${vol.status}, not ready`);
  requireHere(d, vol, 'snapshot');
  const backend = backendOf(d, vol);
  if (!canSnapshot(backend)) {
    throw unsupported(`backend "${backend.name}" (${backend.driver}) does not take snapshots`);
  }
  const row: SnapshotRow = {
    id: d.newId('snap'), name, volumeId: vol.id, backend: backend.name, sizeBytes: vol.sizeBytes,
    fsType: vol.fsType, volumeMode: vol.volumeMode, status: 'creating', createdAt: d.now(),
  };
  d.store.ensureHeadroom();
  await commit(d, (w) => w.createSnapshot(row));
  try {
    await backend.createSnapshot(toBackendVolume(vol), toBackendSnapshot(row), onProgress);
  } catch (err) {
    try {
      await backend.deleteSnapshot(toBackendSnapshot(row));
      await commit(d, (w) => w.deleteSnapshot(row.id));
    } catch (cleanupErr) {
      d.log.warn({ err: cleanupErr, snapshot: name }, 'snapshot cleanup failed; left for reconcile');
    }
    throw err;
  }
  await commit(d, (w) => w.setSnapshotStatus(row.id, 'ready'));
  return toSnapshot({ ...row, status: 'ready' });
}

export async function deleteSnapshot(d: OpDeps, snap: SnapshotRow): Promise<void> {
  const backend = d.backends.get(snap.backend);
  if (!backend) throw failedPrecondition(`snapshot "${snap.name}" lives on backend "${snap.backend}", which is not configured`);
  if (!canSnapshot(backend)) throw unsupported(`backend "${backend.name}" (${backend.driver}) does not delete snapshots`);
  await commit(d, (w) => w.setSnapshotStatus(snap.id, 'deleting'));
  await backend.deleteSnapshot(toBackendSnapshot(snap));
  await commit(d, (w) => w.deleteSnapshot(snap.id));
}

/** Rolls a 'creating' snapshot back or a 'deleting' one forward. */
export async function finishInterruptedSnapshot(d: OpDeps, snap: SnapshotRow): Promise<void> {
  const backend = d.backends.get(snap.backend);
  if (!backend || !canSnapshot(backend)) throw failedPrecondition(`snapshot "${snap.name}" is ${snap.status} on backend "${snap.backend}", which cannot finish it`);
  await backend.deleteSnapshot(toBackendSnapshot(snap));
  await commit(d, (w) => w.deleteSnapshot(snap.id));
}

export async function expandVolume(d: OpDeps, vol: VolumeRow, sizeBytes: number): Promise<ExpandResponse> {
  if (vol.status !== 'ready') throw failedPrecondition(`volume "${vol.name}" is ${vol.status}, not ready`);
  requireHere(d, vol, 'expand');
  // Only the node that mounts a volume can grow its filesystem and refresh its device.
  const there = d.catalog.listAttachments(vol.id).find((a) => a.node !== d.nodeId && (a.path !== null || a.device !== null));
  if (there) throw failedPrecondition(`volume "${vol.name}" is in use on node "${there.node}"; expand it there`);
  const backend = backendOf(d, vol);
  if (!canExpand(backend)) {
    throw unsupported(`backend "${backend.name}" (${backend.driver}) cannot expand volumes`);
  }
  if (sizeBytes < vol.sizeBytes) {
    throw outOfRange('size', `volumes cannot shrink (current size ${vol.sizeBytes} bytes, asked ${sizeBytes})`);
  }
  const local = localAttachment(d, vol.id);
  const mounted = (local?.path ?? null) !== null;
  const pendingFsGrowth = mounted && backend.capabilities.expansion === 'offline' && vol.volumeMode === 'filesystem';
  if (sizeBytes === vol.sizeBytes) return { volume: loadVolume(d, vol), pendingFsGrowth: false };
  const device = local?.device ?? null;
  d.store.ensureHeadroom();
  const outcome = await backend.expand(toBackendVolume(vol), sizeBytes, { mounted, device });
  await commit(d, (w) => w.patchVolume(vol.id, { sizeBytes }));
  // The backend knows better than its backend-wide capability (loop: xfs online, ext4 offline).
  const pending = outcome ? outcome.pendingFsGrowth && vol.volumeMode === 'filesystem' : pendingFsGrowth;
  return { volume: loadVolume(d, { ...vol, sizeBytes }), pendingFsGrowth: pending };
}
