/**
 * What the volume service's helpers (mount-ops, snapshot-ops, reconcile) share: the catalog
 * (cluster facts), the store (this node's facts), the backends, the OS tools and identity.
 * Built once in createVolumeService; never global. Also the record -> view conversions, so
 * every path renders a Volume the same way, and the few rules about where a volume lives.
 */
import type { Backend, BackendVolume } from './backend.js';
import type { Catalog, CatalogLock, CommitOptions, CatalogWriter } from './catalog/catalog.js';
import { failedPrecondition } from './errors.js';
import type { IdGenerator } from './ids.js';
import type { Logger } from './log.js';
import type { Exec } from './os/exec.js';
import type { AttachmentRow, MountRefRow, SnapshotRow, Store, VolumeRow } from './store/store.js';
import type { TargetPolicy } from './target-policy.js';
import type { Attachment, MountRef, Snapshot, Volume } from './types.js';

export interface CoreDeps {
  /** Cluster facts: volumes, snapshots, attachments (SQLite embedded, or etcd). */
  readonly catalog: Catalog;
  /** This node's facts: mount references and what berth made for them. */
  readonly store: Store;
  readonly backends: ReadonlyMap<string, Backend>;
  readonly exec: Exec;
  readonly log: Logger;
  readonly nodeId: string;
  readonly stateRoot: string;
  /** Where consumer targets may be (config targets.allowedPrefixes, and the state root berth never mounts in). */
  readonly targets: TargetPolicy;
  /** RFC 3339 "now" from the injected clock. */
  readonly now: () => string;
  readonly newId: IdGenerator;
  /**
   * Views of volumes with no attachment and no reference, by their (frozen, immutable)
   * store row: such a view depends on the row alone, and the store replaces the row object
   * on every change, so an entry can never be stale. Most of a 10,000-volume list.
   */
  readonly idleViews: WeakMap<VolumeRow, Volume>;
}

/** The deps of one operation: the catalog locks it holds, which fence every write it makes. */
export interface OpDeps extends CoreDeps {
  readonly locks: readonly CatalogLock[];
}

/** @example const od = underLocks(d, [lock]); await mountVolume(od, row, req, 'docker'); */
export const underLocks = (d: CoreDeps, locks: readonly CatalogLock[]): OpDeps => ({ ...d, locks });

/**
 * Commits catalog writes (fenced by the operation's locks) and the node-local writes of the
 * same step. The local writes are one SQLite transaction with the step's durability in both
 * modes: the embedded catalog runs them inside its own transaction (this one joins it), etcd
 * runs them after its commit, where they would otherwise be separate statements, each its own
 * fsync and a crash or full disk between them keeping half of the step.
 */
export function commit(d: OpDeps, fn: (w: CatalogWriter) => void, opts: Omit<CommitOptions, 'lock'> = {}): Promise<void> {
  const local = opts.local;
  const durable = opts.durable !== false;
  return d.catalog.commit(fn, { ...opts, lock: d.locks, ...(local ? { local: () => d.store.tx(local, { durable }) } : {}) });
}

/** Commit options for records of runtime (kernel) state: mounts, paths, implicit attachments. */
export const RUNTIME = { durable: false } as const;

/** True in cluster mode: other nodes share the catalog. */
export const clustered = (d: CoreDeps): boolean => d.catalog.mode === 'etcd';

/** This node's attachment of the volume (its device and mounted path here), if any. */
export function localAttachment(d: CoreDeps, volumeId: string): AttachmentRow | undefined {
  return d.catalog.listAttachments(volumeId).find((a) => a.node === d.nodeId);
}

/** Where the volume is mounted on this node (what its consumers are given), or null. */
export function pathOf(d: CoreDeps, volumeId: string): string | null {
  return localAttachment(d, volumeId)?.path ?? null;
}

/**
 * A volume of a backend local to its node lives on that node: what needs its data (mount,
 * attach here, delete, snapshot, expand, copy) runs there. FailedPrecondition naming it.
 */
export function requireHere(d: CoreDeps, row: Pick<VolumeRow, 'name' | 'node' | 'backend'>, what: string): void {
  if (row.node !== null && row.node !== d.nodeId) {
    throw failedPrecondition(`volume "${row.name}" lives on node "${row.node}" (backend "${row.backend}" is local to its node); ${what} it there`);
  }
}

/** The backend instance holding a volume; FailedPrecondition when the config no longer has it. */
export function backendOf(d: CoreDeps, row: Pick<VolumeRow, 'backend' | 'name'>): Backend {
  const b = d.backends.get(row.backend);
  if (!b) throw failedPrecondition(`volume "${row.name}" lives on backend "${row.backend}", which is not configured`);
  return b;
}

export const toBackendVolume = (row: VolumeRow): BackendVolume => ({
  id: row.id,
  name: row.name,
  sizeBytes: row.sizeBytes,
  fsType: row.fsType,
  volumeMode: row.volumeMode,
  options: row.options,
});

const toAttachment = (a: AttachmentRow): Attachment => ({
  node: a.node, device: a.device, path: a.path, readOnly: a.readOnly, implicit: a.implicit, createdAt: a.createdAt,
});

const toMountRef = (m: MountRefRow): MountRef => ({
  consumer: m.consumer, frontend: m.frontend, target: m.target, readOnly: m.readOnly, createdAt: m.createdAt,
});

/** Shared by every volume with no attachment / reference (most of a 10,000-volume list). */
const NONE: readonly never[] = Object.freeze([]);

const committedRefs = (mounts: readonly MountRefRow[]): readonly MountRef[] => {
  const out: MountRef[] = [];
  for (const m of mounts) if (m.state === 'committed') out.push(toMountRef(m));
  return out.length ? out : NONE;
};

/**
 * Builds the public view. Pending mount references are in-flight and not shown. With
 * `idle` (CoreDeps.idleViews), the view of a volume with no attachment / reference is
 * built once per store row and shared (frozen).
 */
export function toVolume(
  row: VolumeRow,
  attachments: readonly AttachmentRow[],
  mounts: readonly MountRefRow[],
  node: string,
  idle?: WeakMap<VolumeRow, Volume>,
): Volume {
  if (idle && attachments.length === 0 && mounts.length === 0 && Object.isFrozen(row)) {
    let view = idle.get(row);
    if (!view) {
      view = Object.freeze(buildView(row, NONE, NONE, node));
      idle.set(row, view);
    }
    return view;
  }
  return buildView(row, attachments, mounts, node);
}

function buildView(row: VolumeRow, attachments: readonly AttachmentRow[], mounts: readonly MountRefRow[], node: string): Volume {
  return {
    id: row.id,
    name: row.name,
    backend: row.backend,
    sizeBytes: row.sizeBytes,
    fsType: row.fsType,
    volumeMode: row.volumeMode,
    accessMode: row.accessMode,
    labels: row.labels,
    options: row.options,
    source: row.sourceKind && row.sourceId ? { kind: row.sourceKind, id: row.sourceId } : null,
    status: row.status,
    createdAt: row.createdAt,
    attachments: attachments.length ? attachments.map(toAttachment) : NONE,
    mounts: mounts.length ? committedRefs(mounts) : NONE,
    node: row.node,
    path: attachments.find((a) => a.node === node)?.path ?? null,
  };
}

/** Reads a volume's attachments and references and renders it. */
export function loadVolume(d: CoreDeps, row: VolumeRow): Volume {
  return toVolume(row, d.catalog.listAttachments(row.id), d.store.listMountRefs(row.id), d.nodeId, d.idleViews);
}

/** By id first, then by name. */
export function findVolumeRow(d: CoreDeps, ref: string): VolumeRow | null {
  return d.catalog.getVolume(ref) ?? d.catalog.getVolumeByName(ref);
}

export function findSnapshotRow(d: CoreDeps, ref: string): SnapshotRow | null {
  return d.catalog.getSnapshot(ref) ?? d.catalog.getSnapshotByName(ref);
}

export const toSnapshot = (r: SnapshotRow): Snapshot => ({
  id: r.id, name: r.name, volumeId: r.volumeId, backend: r.backend, sizeBytes: r.sizeBytes,
  readyToUse: r.status === 'ready', createdAt: r.createdAt,
});
