/**
 * The Store: durable records of volumes, attachments, mount references and snapshots.
 * Synchronous on purpose (better-sqlite3 is synchronous and fast): the volume service can
 * run a read-check-write sequence inside `tx` with no await in between, and `find()` can
 * stay a plain function. The store holds records only; it never decides rules.
 */
import type { AccessMode, Frontend, FsType, VolumeMode, VolumeStatus } from '../types.js';

export interface VolumeRow {
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
  readonly status: VolumeStatus;
  readonly createdAt: string;
  /** The backend's managed path (or device for block) while mounted on this node, else null. */
  readonly path: string | null;
}

export interface AttachmentRow {
  readonly volumeId: string;
  readonly node: string;
  readonly device: string | null;
  readonly readOnly: boolean;
  readonly implicit: boolean;
  readonly createdAt: string;
}

/**
 * pending: inserted before the side effects of a mount; committed once they all succeeded.
 * A pending row found at start-up is rolled back: its caller never got success.
 */
export type MountRefState = 'pending' | 'committed';

/** A mount as /proc/self/mountinfo names it: its id, and the filesystem and root it shows. */
export interface MountIdentityRow {
  readonly id: number;
  readonly majorMinor: string;
  readonly root: string;
}

export interface MountRefRow {
  readonly volumeId: string;
  readonly consumer: string;
  readonly frontend: Frontend;
  readonly target: string | null;
  readonly readOnly: boolean;
  readonly state: MountRefState;
  readonly createdAt: string;
  /** berth made the target (directory, or file for a block volume), so removing it is berth's job. */
  readonly targetCreated: boolean;
  /**
   * The path bound at the target (the volume's path then), written before the bind: how a
   * bind whose identity was never recorded (a crash) is recognised. Null: no target.
   */
  readonly bindSource: string | null;
  /** The bind mount berth made at the target; null until recorded (with the commit). */
  readonly bindMount: MountIdentityRow | null;
}

/** What a mount reference records about its target (MountRefRow's target fields). */
export type MountRefBinding = Pick<MountRefRow, 'targetCreated' | 'bindSource' | 'bindMount'>;

/** A reference to insert: the target fields default to "not created, nothing recorded". */
export type NewMountRef = Omit<MountRefRow, keyof MountRefBinding> & Partial<MountRefBinding>;

/** creating / deleting are intents, like volume statuses. */
export type SnapshotStatus = 'creating' | 'ready' | 'deleting';

export interface SnapshotRow {
  readonly id: string;
  readonly name: string;
  readonly volumeId: string;
  readonly backend: string;
  readonly sizeBytes: number;
  /** Filesystem and mode of the source volume when the snapshot was taken (a restore inherits them). */
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly status: SnapshotStatus;
  readonly createdAt: string;
}

export interface VolumeFilter {
  readonly backend?: string;
  readonly status?: VolumeStatus;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface VolumePatch {
  readonly status?: VolumeStatus;
  readonly path?: string | null;
  readonly sizeBytes?: number;
}

export interface TxOptions {
  /**
   * true (default): the commit is fsynced before tx returns (an intent before a persistent
   * side effect, or a result the caller is told about and must not lose to a power cut).
   * false: a "runtime" commit, fsynced by the next durable commit or the next checkpoint. It
   * survives a process crash (kill -9) but may be lost to a power cut, so use it only for
   * records of kernel state that a power cut wipes anyway (mount references, mounted paths,
   * implicit loop attachments) and for roll-forward completions (a deleted row whose
   * 'deleting' intent is durable). The WAL keeps commit order, so a power cut loses a
   * suffix of the runtime commits, never one before a durable commit.
   */
  readonly durable?: boolean;
}

export interface Store {
  /** Runs fn in one transaction (nested calls join the outer one, and its durability). fn must not await. */
  tx<T>(fn: () => T, opts?: TxOptions): T;
  /**
   * Before an operation that takes new resources (create, mount, attach, expand,
   * snapshot): makes sure the records it writes after its side effects will fit
   * (space-reserve.ts). ResourceExhausted naming the state root when they might not.
   */
  ensureHeadroom(): void;

  getVolume(id: string): VolumeRow | null;
  getVolumeByName(name: string): VolumeRow | null;
  /** Ordered by name. Every given filter must match (labels: every pair). */
  listVolumes(filter?: VolumeFilter): VolumeRow[];
  countVolumes(): number;
  insertVolume(row: VolumeRow): void;
  updateVolume(id: string, patch: VolumePatch): void;
  /** Also deletes its attachments and mount references. */
  deleteVolume(id: string): void;

  /** All attachments, or one volume's. */
  listAttachments(volumeId?: string): AttachmentRow[];
  /** Insert or replace by (volumeId, node). */
  putAttachment(row: AttachmentRow): void;
  deleteAttachment(volumeId: string, node: string): void;

  /** All mount references, or one volume's, ordered by creation. */
  listMountRefs(volumeId?: string): MountRefRow[];
  /**
   * References whose target is `target`, lies below it, or holds it (one indexed query):
   * two references must never share a target or nest one inside the other.
   */
  listMountRefsNear(target: string): MountRefRow[];
  insertMountRef(row: NewMountRef): void;
  setMountRefState(volumeId: string, consumer: string, state: MountRefState): void;
  /** Records what berth knows about a reference's target (before the bind, after it, after a re-bind). */
  setMountRefBinding(volumeId: string, consumer: string, binding: MountRefBinding): void;
  deleteMountRef(volumeId: string, consumer: string): void;

  getSnapshot(id: string): SnapshotRow | null;
  getSnapshotByName(name: string): SnapshotRow | null;
  listSnapshots(filter?: { volumeId?: string }): SnapshotRow[];
  insertSnapshot(row: SnapshotRow): void;
  setSnapshotStatus(id: string, status: SnapshotStatus): void;
  deleteSnapshot(id: string): void;

  close(): void;
}
