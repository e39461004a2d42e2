/**
 * The Store: the node's SQLite. It always holds the node facts (mount references and what
 * berth made for them), and in single-node mode also the catalog's tables (volumes,
 * attachments, snapshots), which core/catalog/sqlite.ts serves as the embedded Catalog.
 * Synchronous on purpose (better-sqlite3 is synchronous and fast): the volume service can
 * run a read-check-write sequence inside `tx` with no await in between, and `find()` can
 * stay a plain function. The store holds records only; it never decides rules.
 */
import type { Frontend } from '../types.js';
import type { AttachmentRecord, SnapshotRecord, SnapshotStatus, VolumeFilter, VolumePatch, VolumeRecord } from '../catalog/catalog.js';

/** A volume's record: the catalog's (core/catalog/catalog.ts), whichever store keeps it. */
export type VolumeRow = VolumeRecord;

/** One node's hold on a volume (catalog record). */
export type AttachmentRow = AttachmentRecord;

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

export type { SnapshotStatus, VolumeFilter, VolumePatch };

/** A snapshot's record (catalog). */
export type SnapshotRow = SnapshotRecord;

export interface TxOptions {
  /**
   * true (default): the commit is fsynced before tx returns (an intent before a persistent
   * side effect, or a result the caller is told about and must not lose to a power cut).
   * false: a "runtime" commit, fsynced by the next durable commit or the next checkpoint. It
   * survives a process crash (kill -9) but may be lost to a power cut, so use it only for
   * records of kernel state that a power cut wipes anyway (mount references, mounted paths,
   * implicit loop attachments), for roll-forward completions (a deleted row whose
   * 'deleting' intent is durable), and for the intent of a create whose leftover
   * reconcile removes (create-ops.ts intentDurability: a new empty directory). The WAL
   * keeps commit order, so a power cut loses a suffix of the runtime commits, never one
   * before a durable commit.
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
  /** Also deletes its attachments (its mount references are node facts: deleteMountRefs). */
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
  /** Every reference this node holds on the volume (it is gone from the catalog). */
  deleteMountRefs(volumeId: string): void;

  getSnapshot(id: string): SnapshotRow | null;
  getSnapshotByName(name: string): SnapshotRow | null;
  listSnapshots(filter?: { volumeId?: string }): SnapshotRow[];
  insertSnapshot(row: SnapshotRow): void;
  setSnapshotStatus(id: string, status: SnapshotStatus): void;
  deleteSnapshot(id: string): void;

  close(): void;
}
