/**
 * Create and remove: the two operations that change whether a volume exists. Both assume
 * the caller holds the volume's lock (and, for clones, the source's).
 *
 * Intents: create inserts the row as 'creating' before backend.create and sets 'ready'
 * after; remove sets 'deleting' before backend.delete and removes the row after. A crash in
 * between is rolled back (creating) or forward (deleting) by reconcile.ts; a failure at run
 * time is cleaned up right here.
 */
import { canAttach, canClone, canSnapshot, type Backend, type CreateSpec, type Progress } from './backend.js';
import {
  backendOf, clustered, commit, findSnapshotRow, findVolumeRow, loadVolume, requireHere, RUNTIME, toBackendVolume, type CoreDeps, type OpDeps,
} from './core-deps.js';
import { chooseBackend } from './backend-choice.js';
import { alreadyExists, BerthError, failedPrecondition, inUse, invalidArgument, notFound, outOfRange } from './errors.js';
import { releaseAll } from './mount-ops.js';
import { isPreemptible, PREEMPT_LABEL } from './fencing.js';
import type { CreateVolumeRequest } from './service.js';
import type { SnapshotRow, VolumeRow } from './store/store.js';
import type { FsType, Volume, VolumeMode } from './types.js';
import { clip } from './user-input.js';

/** A create request after field validation, before the backend filled defaults. */
export interface CheckedCreate extends CreateVolumeRequest {
  readonly labels: Readonly<Record<string, string>>;
  readonly options: Readonly<Record<string, string>>;
}

/** A volume's labels without the one berth sets for `preempt` (compared as its own field). */
const withoutPreempt = (labels: Readonly<Record<string, string>>): Readonly<Record<string, string>> => {
  if (!Object.hasOwn(labels, PREEMPT_LABEL)) return labels;
  const { [PREEMPT_LABEL]: _, ...rest } = labels;
  return rest;
};

const sameRecord = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
};

/**
 * Idempotency: a request matches an existing volume when every field it *gives* equals
 * the stored value (after the backend's defaults). Fields left out do not conflict, so
 * Docker's bare `Create {Name}` for a volume made elsewhere with -o size=... succeeds,
 * and a CSI retry with the same parameters gets the same volume.
 */
function conflicts(req: CheckedCreate, spec: CreateSpec, existing: VolumeRow, source: { kind: string; id: string } | null): string[] {
  const diff: string[] = [];
  if (req.backend !== undefined && req.backend !== existing.backend) diff.push('backend');
  if (req.sizeBytes !== undefined && spec.sizeBytes !== existing.sizeBytes) diff.push('size');
  if (req.fsType !== undefined && req.fsType !== existing.fsType) diff.push('fs');
  if (req.volumeMode !== undefined && req.volumeMode !== existing.volumeMode) diff.push('mode');
  if (req.accessMode !== undefined && req.accessMode !== existing.accessMode) diff.push('accessMode');
  if (req.labels && Object.keys(req.labels).length && !sameRecord(req.labels, withoutPreempt(existing.labels))) diff.push('labels');
  if (req.options && Object.keys(req.options).length && !sameRecord(req.options, existing.options)) diff.push('options');
  if (source && (source.kind !== existing.sourceKind || source.id !== existing.sourceId)) diff.push('source');
  if (req.preempt !== undefined && req.preempt !== isPreemptible(existing)) diff.push('preempt');
  return diff;
}

interface ResolvedSource {
  readonly kind: 'snapshot' | 'volume';
  readonly snapshot?: SnapshotRow;
  readonly volume?: VolumeRow;
  readonly id: string;
  readonly name: string;
  readonly backend: string;
  readonly sizeBytes: number;
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
}

/** Finds fromSnapshot / fromVolume under the lock. */
function findSource(d: CoreDeps, req: CheckedCreate): ResolvedSource | null {
  if (!req.source) return null;
  if (req.source.kind === 'snapshot') {
    const snap = findSnapshotRow(d, req.source.ref);
    if (!snap) throw notFound(`snapshot "${req.source.ref}" does not exist`);
    if (snap.status !== 'ready') throw failedPrecondition(`snapshot "${snap.name}" is ${snap.status}, not ready`);
    return { kind: 'snapshot', snapshot: snap, id: snap.id, name: snap.name, backend: snap.backend, sizeBytes: snap.sizeBytes,
      fsType: snap.fsType, volumeMode: snap.volumeMode };
  }
  const vol = findVolumeRow(d, req.source.ref);
  if (!vol) throw notFound(`volume "${req.source.ref}" does not exist`);
  if (vol.status !== 'ready') throw failedPrecondition(`volume "${vol.name}" is ${vol.status}, not ready`);
  return { kind: 'volume', volume: vol, id: vol.id, name: vol.name, backend: vol.backend, sizeBytes: vol.sizeBytes,
    fsType: vol.fsType, volumeMode: vol.volumeMode };
}

/**
 * A restore or clone is made by the source's backend: refuse another one, or one that cannot.
 * Both errors carry the source's field (the Unsupported one too), so a frontend whose protocol
 * answers an unusable source differently (CSI: INVALID_ARGUMENT) can tell them from others.
 */
function checkSource(source: ResolvedSource, backend: Backend): void {
  const field = source.kind === 'snapshot' ? 'fromSnapshot' : 'fromVolume';
  if (source.backend !== backend.name) {
    throw invalidArgument(field, `${source.kind} "${source.name}" is on backend "${source.backend}"; a volume from it must be created there too`);
  }
  if (source.kind === 'snapshot' && !canSnapshot(backend)) throw cannotCopy(backend, 'snapshot');
  if (source.kind === 'volume' && !canClone(backend)) throw cannotCopy(backend, 'volume');
}

function cannotCopy(backend: Backend, kind: 'snapshot' | 'volume'): BerthError {
  return kind === 'snapshot'
    ? new BerthError('Unsupported', `backend "${backend.name}" (${backend.driver}) cannot create volumes from snapshots`, { field: 'fromSnapshot' })
    : new BerthError('Unsupported', `backend "${backend.name}" (${backend.driver}) cannot clone volumes`, { field: 'fromVolume' });
}

/** A new volume of a node-local backend lives here: refused when the caller needs it elsewhere. */
function checkPlacement(d: CoreDeps, req: CheckedCreate, backend: Backend): void {
  if (req.nodes === undefined || backend.capabilities.scope !== 'local' || req.nodes.includes(d.nodeId)) return;
  const named = req.nodes.slice(0, 3).map((n) => `"${clip(n, 64)}"`).join(', ');
  const wanted = req.nodes.length > 3 ? `${named} (+${req.nodes.length - 3} more)` : named;
  throw new BerthError('ResourceExhausted',
    `nodes: backend "${backend.name}" keeps a volume on the node that makes it, and this is node "${d.nodeId}"; the volume is wanted on ${wanted}: make it there`,
    { field: 'nodes' });
}

export async function createVolume(
  d: OpDeps,
  req: CheckedCreate,
  defaultBackend: string,
  onProgress?: Progress,
): Promise<Volume> {
  // Order matters: every field is checked (source, backend, then the backend's own checks)
  // before the request is compared with a volume of that name, so a bad field is named
  // as such and never reported as "already exists"; nothing changes before that.
  const found = d.catalog.getVolumeByName(req.name);
  // A row left 'creating'/'deleting' by a failed attempt whose cleanup failed too is not a
  // volume to compare with: it is finished (rolled back / forward) once the request is valid.
  const interrupted = found && found.status !== 'ready' && found.status !== 'error' ? found : null;
  let existing = interrupted ? null : found;
  const source = findSource(d, req);
  const backend = chooseBackend(d.backends, defaultBackend, {
    explicit: req.backend, existing: existing?.backend, source: source?.backend, fsType: req.fsType, volumeMode: req.volumeMode,
  });
  if (source) checkSource(source, backend);
  if (source && req.fsType !== undefined && req.fsType !== source.fsType) {
    throw invalidArgument('fs', `the copy keeps the ${source.kind}'s filesystem (${source.fsType ?? 'none'}); "${req.fsType}" cannot be honoured`);
  }
  if (source && req.volumeMode !== undefined && req.volumeMode !== source.volumeMode) {
    throw invalidArgument('mode', `the copy keeps the ${source.kind}'s mode (${source.volumeMode})`);
  }
  if (source && req.sizeBytes !== undefined && req.sizeBytes !== 0 && req.sizeBytes < source.sizeBytes) {
    throw outOfRange('size', `must be at least the source's size (${source.sizeBytes} bytes)`);
  }
  const spec = backend.validateCreate({
    sizeBytes: req.sizeBytes || source?.sizeBytes || 0,
    fsType: req.fsType ?? source?.fsType ?? null,
    volumeMode: req.volumeMode ?? source?.volumeMode ?? 'filesystem',
    options: req.options,
  });

  if (interrupted) {
    // We hold the lock, so nothing else is running on it: finish that intent before deciding.
    await finishInterrupted(d, interrupted);
    existing = d.catalog.getVolumeByName(req.name);
  }
  if (existing) {
    const diff = conflicts(req, spec, existing, source ? { kind: source.kind, id: source.id } : null);
    if (diff.length) {
      throw alreadyExists(`volume "${req.name}" already exists with different ${diff.join(', ')}`);
    }
    return loadVolume(d, existing);
  }
  checkPlacement(d, req, backend);

  const row: VolumeRow = {
    id: d.newId('vol'),
    name: req.name,
    backend: backend.name,
    sizeBytes: spec.sizeBytes,
    fsType: spec.fsType,
    volumeMode: spec.volumeMode,
    accessMode: req.accessMode ?? 'ReadWriteOnce',
    labels: req.preempt ? { ...req.labels, [PREEMPT_LABEL]: 'true' } : req.labels,
    options: spec.options,
    sourceKind: source?.kind ?? null,
    sourceId: source?.id ?? null,
    status: 'creating',
    createdAt: d.now(),
    // In cluster mode a volume of a backend local to its node lives here.
    node: clustered(d) && backend.capabilities.scope === 'local' ? d.nodeId : null,
  };
  if (source?.volume) requireHere(d, source.volume, 'copy it');
  // Nothing is made that could not be recorded as made (a full state disk).
  d.store.ensureHeadroom();
  await commit(d, (w) => w.createVolume(row), intentDurability(d, backend, source));
  const bv = toBackendVolume(row);
  try {
    if (source?.snapshot) {
      const s = source.snapshot;
      if (!canSnapshot(backend)) throw cannotCopy(backend, 'snapshot'); // checkSource refused it already
      await backend.createFromSnapshot(bv, { id: s.id, volumeId: s.volumeId, sizeBytes: s.sizeBytes }, onProgress);
    } else if (source?.volume) {
      if (!canClone(backend)) throw cannotCopy(backend, 'volume');
      await backend.createFromVolume(bv, toBackendVolume(source.volume), onProgress);
    } else {
      await backend.create(bv);
    }
  } catch (err) {
    try {
      await backend.delete(bv);
      await commit(d, (w) => w.deleteVolume(row.id));
    } catch (cleanupErr) {
      // Left as 'creating': the next create of this name or the next start-up rolls it back.
      d.log.warn({ err: cleanupErr, volume: row.name }, 'create cleanup failed; left for reconcile');
    }
    throw err;
  }
  await commit(d, (w) => w.patchVolume(row.id, { status: 'ready' }));
  return loadVolume(d, d.catalog.getVolume(row.id) ?? { ...row, status: 'ready' });
}

/**
 * How the 'creating' intent is committed. Durable (fsynced) by default: the record is on
 * disk before the object exists, so a power cut cannot leave an object no record accounts
 * for. Not fsynced for a plain create (no copy) on a backend that can tell such a leftover
 * from data and remove it (discardIfEmpty: a new directory holds nothing), in embedded mode
 * (an etcd commit is always durable). There the intent still survives kill -9 like every
 * commit, the 'ready' commit's fsync carries it to disk before the caller is answered (the
 * WAL keeps commit order), and a power cut in between may leave an empty directory with no
 * record, which reconcile removes (reconcile.ts rule 4). One fsync fewer per create.
 */
function intentDurability(d: OpDeps, backend: Backend, source: ResolvedSource | null): { readonly durable?: boolean } {
  return source === null && backend.discardIfEmpty !== undefined && !clustered(d) ? RUNTIME : {};
}

/** Rolls a 'creating' row back or a 'deleting' row forward (backend delete + row removal). */
export async function finishInterrupted(d: OpDeps, row: VolumeRow): Promise<void> {
  requireHere(d, row, `finish its interrupted ${row.status === 'creating' ? 'create' : 'remove'}`);
  const backend = backendOf(d, row);
  const bv = toBackendVolume(row);
  if (row.status === 'deleting') {
    // Undo whatever still holds it on this node before deleting the data.
    await releaseAll(d, row, undefined, true);
  } else {
    await backend.unmount(bv);
    if (canAttach(backend)) await backend.detach(bv);
  }
  await backend.delete(bv);
  // The intent row being finished is durable: a lost removal is finished again next start.
  await commit(d, (w) => w.deleteVolume(row.id), { ...RUNTIME, local: () => d.store.deleteMountRefs(row.id) });
}

export async function removeVolume(d: OpDeps, row: VolumeRow, force: boolean): Promise<void> {
  const refs = d.store.listMountRefs(row.id);
  const attachments = d.catalog.listAttachments(row.id);
  if (!force && (refs.length || attachments.length)) {
    const why = refs.length
      ? `mounted by ${refs.map((r) => r.consumer).join(', ')}`
      : `attached to node ${attachments.map((a) => `"${a.node}"`).join(', ')}`;
    throw inUse(`volume "${row.name}" is ${why}; unmount/detach first or remove with force`);
  }
  if (row.status === 'creating') throw failedPrecondition(`volume "${row.name}" is still being created`);
  requireHere(d, row, 'remove');
  // In cluster mode another node's kernel may hold it: force cannot reach there.
  const elsewhere = clustered(d) ? attachments.filter((a) => a.node !== d.nodeId) : [];
  if (elsewhere.length) {
    throw inUse(`volume "${row.name}" is ${elsewhere.some((a) => a.path !== null) ? 'mounted' : 'attached'} on node ${elsewhere.map((a) => `"${a.node}"`).join(', ')}; release it there first`);
  }
  if (force) {
    await releaseAll(d, row, undefined, true);
    // Attachments on other nodes are records only (the backend attaches locally).
    await commit(d, (w) => {
      for (const a of d.catalog.listAttachments(row.id)) w.deleteAttachment(row.id, a.node);
    });
  }
  await commit(d, (w) => w.patchVolume(row.id, { status: 'deleting' }));
  await backendOf(d, row).delete(toBackendVolume(row));
  // The durable 'deleting' intent covers a lost row removal: reconcile rolls it forward.
  await commit(d, (w) => w.deleteVolume(row.id), { ...RUNTIME, local: () => d.store.deleteMountRefs(row.id) });
}
