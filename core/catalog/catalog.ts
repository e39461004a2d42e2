/**
 * The Catalog: the cluster-wide facts (volumes, snapshots, attachments, nodes), behind one
 * asynchronous interface with two homes: SQLite (embedded, single node) and etcd (cluster
 * mode). The volume service is written once against it (docs/architecture.md).
 *
 * Rules every implementation keeps (test/conformance/catalog.case.ts checks them on both):
 * - Reads are synchronous, from a view consistent at one revision. `fresh()` catches the view
 *   up with every commit made anywhere before the call; `lock()` does the same once granted.
 * - `lock(key)` serialises one volume (or snapshot) name across the cluster. A commit given the
 *   lock is fenced by it: when the lock was lost (lease expired), the commit fails and writes
 *   nothing.
 * - `commit(fn)` applies every write `fn` records atomically, or none. Creating a name that is
 *   taken (by a commit this view has not seen yet) fails with AlreadyExists.
 * - Records are plain frozen JSON; callers never change them in place.
 */
import type { AccessMode, FsType, VolumeMode, VolumeStatus } from '../types.js';

export interface VolumeRecord {
  readonly id: string;
  readonly name: string;
  readonly backend: string;
  readonly sizeBytes: number;
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly accessMode: AccessMode;
  readonly labels: Readonly<Record<string, string>>;
  readonly options: Readonly<Record<string, string>>;
  readonly sourceKind: 'snapshot' | 'volume' | null;
  readonly sourceId: string | null;
  /** creating / deleting are intents (rolled back / forward by reconcile). */
  readonly status: VolumeStatus;
  readonly createdAt: string;
  /**
   * The node whose storage holds the volume, for a backend local to its node; null for a
   * shared backend (reachable from every node). Operations that need the data run there.
   */
  readonly node: string | null;
}

export interface AttachmentRecord {
  readonly volumeId: string;
  readonly node: string;
  /** The node's device for the volume (a loop device), or null. */
  readonly device: string | null;
  /** Where the volume is mounted on that node (what its consumers are given), or null. */
  readonly path: string | null;
  readonly readOnly: boolean;
  /** Made by the core to serve a mount; goes with the node's last mount reference. */
  readonly implicit: boolean;
  readonly createdAt: string;
}

export type SnapshotStatus = 'creating' | 'ready' | 'deleting';

export type { FenceRecord, PreemptRecord } from '../types.js';
import type { FenceRecord, PreemptRecord } from '../types.js';

/** Whether a node's berth processes are alive, as the catalog sees their leases. */
export interface NodeLiveness {
  /** The daemon's lease is alive. */
  readonly alive: boolean;
  /** The node's fence agent's lease is alive. */
  readonly agentAlive: boolean;
  /** The node runs a fence agent (its record says so): then its daemon's lease alone proves nothing. */
  readonly hasAgent: boolean;
}

export interface SnapshotRecord {
  readonly id: string;
  readonly name: string;
  readonly volumeId: string;
  readonly backend: string;
  readonly sizeBytes: number;
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly status: SnapshotStatus;
  readonly createdAt: string;
}

export interface VolumeFilter {
  readonly backend?: string;
  readonly status?: VolumeStatus;
  /** Every pair must match. */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface VolumePatch {
  readonly status?: VolumeStatus;
  readonly sizeBytes?: number;
}

/** What a commit may change; calls only record the writes, `commit` applies them at once. */
export interface CatalogWriter {
  /** A new volume: its id and its name must both be free. */
  createVolume(r: VolumeRecord): void;
  patchVolume(id: string, patch: VolumePatch): void;
  /** Removes the volume, its name and every attachment it has. */
  deleteVolume(id: string): void;
  /** Insert or replace by (volumeId, node). */
  putAttachment(a: AttachmentRecord): void;
  deleteAttachment(volumeId: string, node: string): void;
  createSnapshot(r: SnapshotRecord): void;
  setSnapshotStatus(id: string, status: SnapshotStatus): void;
  deleteSnapshot(id: string): void;
  /** A fence order or its acknowledgement (cluster mode only). */
  putFence(r: FenceRecord): void;
  deleteFence(node: string): void;
  /** A request that the holder of a volume release it now (cluster mode only). */
  putPreempt(r: PreemptRecord): void;
  deletePreempt(volumeId: string): void;
  /** The commit applies only if neither the node's daemon nor its fence agent holds a lease then. */
  expectNodeDown(node: string): void;
  /** The commit applies only if the node's fence record is still exactly `r` (as read). */
  expectFence(r: FenceRecord): void;
}

/** A granted cluster lock: commits that pass it fail once it is lost. */
export interface CatalogLock {
  readonly key: string;
  /** Releases the lock; safe to call twice, never throws. */
  release(): Promise<void>;
}

export interface CommitOptions {
  /** The lock(s) the writes are made under (fencing): the commit fails if any was lost. */
  readonly lock?: CatalogLock | readonly CatalogLock[] | null;
  /**
   * true (default): the commit is durable before it returns. false: a "runtime" commit
   * (records of kernel state that a power cut wipes anyway); see core/store/store.ts TxOptions.
   */
  readonly durable?: boolean;
  /**
   * Node-local writes (LocalStore) that belong to the same step. The embedded catalog runs them
   * in the same SQLite transaction; etcd commits the catalog writes first, then runs them.
   */
  readonly local?: () => void;
}

export interface LockOptions {
  /** How long to wait for another holder before Busy; 0 = do not wait. */
  readonly waitMs: number;
}

export interface CatalogView {
  getVolume(id: string): VolumeRecord | null;
  getVolumeByName(name: string): VolumeRecord | null;
  /** Ordered by name. */
  listVolumes(filter?: VolumeFilter): VolumeRecord[];
  countVolumes(): number;
  /** All attachments, or one volume's, ordered by node. */
  listAttachments(volumeId?: string): AttachmentRecord[];
  getSnapshot(id: string): SnapshotRecord | null;
  getSnapshotByName(name: string): SnapshotRecord | null;
  /** Ordered by creation time, then name. */
  listSnapshots(filter?: { readonly volumeId?: string }): SnapshotRecord[];
  /** The fence order / acknowledgement of a node, or null. */
  getFence(node: string): FenceRecord | null;
  listFences(): FenceRecord[];
  getPreempt(volumeId: string): PreemptRecord | null;
  /** What the leases say about a node; null for a node the catalog does not know. */
  nodeLiveness(node: string): NodeLiveness | null;
}

/** A change another node (or this one) committed, for the parts of the core that react to them. */
export type CatalogChange =
  | { readonly kind: 'fence'; readonly node: string }
  | { readonly kind: 'preempt'; readonly volumeId: string }
  | { readonly kind: 'attachment'; readonly volumeId: string; readonly node: string; readonly deleted: boolean }
  | { readonly kind: 'liveness'; readonly node: string }
  /** The candidates for cluster leader changed (cluster mode: core/catalog/election.ts). */
  | { readonly kind: 'leader' };

export interface Catalog extends CatalogView {
  /** 'embedded': SQLite in the state root, one node. 'etcd': cluster mode. */
  readonly mode: 'embedded' | 'etcd';
  /** Catches the view up with every commit made anywhere before this call. */
  fresh(): Promise<void>;
  lock(key: string, opts: LockOptions): Promise<CatalogLock>;
  commit(fn: (w: CatalogWriter) => void, opts?: CommitOptions): Promise<void>;
  /** Calls `cb` for every change applied to the view (cluster mode; embedded: never). Returns an unsubscribe. */
  onChange(cb: (change: CatalogChange) => void): () => void;
  close(): Promise<void>;
}
