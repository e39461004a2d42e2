/**
 * Snapshots: create (idempotent by name), delete, plus expand, the other optional ability.
 * Callers hold the locks. Intents as for volumes: a snapshot row is 'creating' before
 * backend.createSnapshot and 'deleting' before backend.deleteSnapshot.
 */
import { backendOf, loadVolume, toBackendVolume, toSnapshot, type CoreDeps } from './core-deps.js';
import { alreadyExists, failedPrecondition, outOfRange, unsupported } from './errors.js';
import type { Progress } from './backend.js';
import type { ExpandResponse } from './service.js';
import type { SnapshotRow, VolumeRow } from './store/store.js';
import type { Snapshot } from './types.js';

const toBackendSnapshot = (s: SnapshotRow) => ({ id: s.id, volumeId: s.volumeId, sizeBytes: s.sizeBytes });

export async function createSnapshot(d: CoreDeps, name: string, vol: VolumeRow, onProgress?: Progress): Promise<Snapshot> {
  let existing = d.store.getSnapshotByName(name);
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
  const backend = backendOf(d, vol);
  if (!backend.capabilities.snapshots || !backend.createSnapshot) {
    throw unsupported(`backend "${backend.name}" (${backend.driver}) does not take snapshots`);
  }
  const row: SnapshotRow = {
    id: d.newId('snap'), name, volumeId: vol.id, backend: backend.name, sizeBytes: vol.sizeBytes,
    fsType: vol.fsType, volumeMode: vol.volumeMode, status: 'creating', createdAt: d.now(),
  };
  d.store.ensureHeadroom();
  d.store.insertSnapshot(row);
  try {
    await backend.createSnapshot(toBackendVolume(vol), toBackendSnapshot(row), onProgress);
  } catch (err) {
    try {
      await backend.deleteSnapshot?.(toBackendSnapshot(row));
      d.store.deleteSnapshot(row.id);
    } catch (cleanupErr) {
      d.log.warn({ err: cleanupErr, snapshot: name }, 'snapshot cleanup failed; left for reconcile');
    }
    throw err;
  }
  d.store.setSnapshotStatus(row.id, 'ready');
  return toSnapshot({ ...row, status: 'ready' });
}

export async function deleteSnapshot(d: CoreDeps, snap: SnapshotRow): Promise<void> {
  const backend = d.backends.get(snap.backend);
  if (!backend) throw failedPrecondition(`snapshot "${snap.name}" lives on backend "${snap.backend}", which is not configured`);
  if (!backend.deleteSnapshot) throw unsupported(`backend "${backend.name}" (${backend.driver}) does not delete snapshots`);
  d.store.setSnapshotStatus(snap.id, 'deleting');
  await backend.deleteSnapshot(toBackendSnapshot(snap));
  d.store.deleteSnapshot(snap.id);
}

/** Rolls a 'creating' snapshot back or a 'deleting' one forward. */
export async function finishInterruptedSnapshot(d: CoreDeps, snap: SnapshotRow): Promise<void> {
  const backend = d.backends.get(snap.backend);
  if (!backend?.deleteSnapshot) throw failedPrecondition(`snapshot "${snap.name}" is ${snap.status} on backend "${snap.backend}", which cannot finish it`);
  await backend.deleteSnapshot(toBackendSnapshot(snap));
  d.store.deleteSnapshot(snap.id);
}

export async function expandVolume(d: CoreDeps, vol: VolumeRow, sizeBytes: number): Promise<ExpandResponse> {
  if (vol.status !== 'ready') throw failedPrecondition(`volume "${vol.name}" is ${vol.status}, not ready`);
  const backend = backendOf(d, vol);
  if (backend.capabilities.expansion === 'none' || !backend.expand) {
    throw unsupported(`backend "${backend.name}" (${backend.driver}) cannot expand volumes`);
  }
  if (sizeBytes < vol.sizeBytes) {
    throw outOfRange('size', `volumes cannot shrink (current size ${vol.sizeBytes} bytes, asked ${sizeBytes})`);
  }
  const mounted = vol.path !== null;
  const pendingFsGrowth = mounted && backend.capabilities.expansion === 'offline' && vol.volumeMode === 'filesystem';
  if (sizeBytes === vol.sizeBytes) return { volume: loadVolume(d, vol), pendingFsGrowth: false };
  const device = d.store.listAttachments(vol.id).find((a) => a.node === d.nodeId)?.device ?? null;
  d.store.ensureHeadroom();
  const outcome = await backend.expand(toBackendVolume(vol), sizeBytes, { mounted, device });
  d.store.updateVolume(vol.id, { sizeBytes });
  // The backend knows better than its backend-wide capability (loop: xfs online, ext4 offline).
  const pending = outcome ? outcome.pendingFsGrowth && vol.volumeMode === 'filesystem' : pendingFsGrowth;
  return { volume: loadVolume(d, { ...vol, sizeBytes }), pendingFsGrowth: pending };
}
