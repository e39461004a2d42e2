/**
 * The one contract between the core and storage backends. The core reaches a backend
 * only through this interface; a backend never touches the store and never decides
 * reference counts: it only makes the OS match what the core asks, idempotently.
 *
 * Idempotency rule for every method: calling it again after it succeeded, or after
 * a crash part-way through it, must succeed and converge on the same end state
 * (find an existing image / loop device / mount and reuse it; delete of a missing
 * volume is not an error). Reconciliation after a crash relies on exactly this.
 */
import type { BackendCapabilities, Capacity, FsType, VolumeMode, VolumeStats } from './types.js';
import type { Exec } from './os/exec.js';
import type { Logger } from './log.js';

/** What a backend needs to know about a volume; the core builds it from its record. */
export interface BackendVolume {
  readonly id: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly options: Readonly<Record<string, string>>;
}

export interface BackendSnapshot {
  readonly id: string;
  readonly volumeId: string;
  readonly sizeBytes: number;
}

export interface CreateSpec {
  readonly sizeBytes: number;
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly options: Readonly<Record<string, string>>;
}

export interface AttachResult {
  /** Device path (e.g. /dev/loop7), or null for backends without devices. */
  readonly device: string | null;
}

export interface MountResult {
  /**
   * Directory consumers see (for block volumes: the device path). For filesystems
   * made by berth this is a subdirectory of the filesystem root so a new volume
   * looks empty (no lost+found).
   */
  readonly path: string;
}

/** Reported by `inspect` so reconciliation can compare the kernel with the records. */
export interface BackendRuntimeState {
  readonly exists: boolean;
  readonly device: string | null; // attached loop device, if any
  readonly mounted: boolean; // the backend's managed mount is present
}

/**
 * What every backend does. The optional abilities are the interfaces below; `Backend` says
 * which capability brings which methods, so the compiler (not only the conformance suite)
 * holds a driver to "a method is present exactly when its capability is declared".
 */
export interface BackendBase {
  /** Instance name from the config (e.g. "local", "fast"). */
  readonly name: string;
  /** Driver name ("dir", "loop", "btrfs", "fake"). */
  readonly driver: string;
  readonly capabilities: BackendCapabilities;

  /** Public settings (paths, defaults) for `berth backend ls`; no secrets. */
  describe(): Readonly<Record<string, unknown>>;

  /**
   * The directories this backend keeps volumes, images, snapshots and mount points in,
   * which no other local user may read (core/private-state.ts). The backend makes them
   * 0700; the daemon tightens existing ones at start-up. A volume's own root inside them
   * is not listed: it keeps the mode its consumers expect.
   */
  privateDirs(): readonly string[];

  /**
   * Checks a create request against what this backend can do, without side effects.
   * Throws InvalidArgument / OutOfRange naming the field ("size", "fs", "opts.<key>"),
   * e.g. xfs under 300 MiB, an unknown backend option, block mode unsupported.
   * Returns the spec with backend defaults filled in (default size, default fs).
   */
  validateCreate(spec: CreateSpec): CreateSpec;

  create(vol: BackendVolume): Promise<void>;
  delete(vol: BackendVolume): Promise<void>;

  /**
   * Mounts the volume at the backend's managed path (making the filesystem on first
   * use) and returns the path consumers see. Requires attach first for attachable backends.
   * `node` is the node the mount is for (the core passes its own node id); a backend whose
   * storage is local to its node refuses another node (FailedPrecondition, field "node").
   */
  mount(vol: BackendVolume, opts: MountOptions): Promise<MountResult>;
  unmount(vol: BackendVolume): Promise<void>;

  /** What the kernel and disk say about this volume right now. */
  inspect(vol: BackendVolume): Promise<BackendRuntimeState>;

  /**
   * Ids of the volumes this backend finds on disk / in the kernel (images, directories,
   * loop devices, mounts under its managed paths), so reconciliation can clean up
   * leftovers that have no record.
   */
  listPresent(): Promise<string[]>;

  /**
   * Optional: removes the object of `vol` (an id listPresent reported) when it holds
   * nothing at all, atomically (a directory: rmdir), and says whether it did; anything
   * that holds data, is mounted or is in use stays. A backend offering it lets the
   * embedded core write a plain create's intent without an fsync (create-ops.ts): a power
   * cut may then keep the new object and lose its record, and reconciliation removes that
   * empty object instead of keeping it as an orphan.
   */
  discardIfEmpty?(vol: BackendVolume): Promise<boolean>;

  capacity(): Promise<Omit<Capacity, 'backend'>>;
  stats(vol: BackendVolume): Promise<VolumeStats>;
}

export interface AttachOptions {
  /** The node the device is for (the core passes its own node id). */
  readonly node: string;
}

export interface MountOptions {
  /** The node the mount is for (the core passes its own node id). */
  readonly node: string;
  /** The device attach gave (null for backends without devices). */
  readonly device: string | null;
}

/** capabilities.attachable: volumes have a device to attach before mounting (loop). Block volumes need one. */
export interface Attaching {
  readonly capabilities: { readonly attachable: true };
  /**
   * Makes the volume's device present for `opts.node` (loop: losetup on this node). A backend
   * whose devices are local to its node refuses another node (FailedPrecondition, field "node").
   */
  attach(vol: BackendVolume, opts: AttachOptions): Promise<AttachResult>;
  detach(vol: BackendVolume): Promise<void>;
  /**
   * Cluster mode: whether this node has a device of the volume attached (loop: a loop device
   * on its image). The node guard asks before it detaches a volume whose attachment another
   * node dropped.
   */
  attachedHere(vol: BackendVolume): Promise<boolean>;
}

/** capabilities.snapshots: takes, deletes and restores snapshots; a backend that copies reports progress. */
export interface Snapshotting {
  readonly capabilities: { readonly snapshots: true };
  createSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void>;
  deleteSnapshot(snap: BackendSnapshot): Promise<void>;
  /** Creates `vol` with the content of a snapshot. */
  createFromSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void>;
}

/** capabilities.clones: creates a volume as a copy of another. */
export interface Cloning {
  readonly capabilities: { readonly clones: true };
  createFromVolume(vol: BackendVolume, source: BackendVolume, onProgress?: Progress): Promise<void>;
}

/** capabilities.expansion 'online' or 'offline': grows volumes. */
export interface Expanding {
  readonly capabilities: { readonly expansion: 'online' | 'offline' };
  /**
   * Grows to newSizeBytes. `mounted` says whether the volume is mounted now; a backend
   * with expansion 'offline' grows the image and leaves the filesystem to grow at next mount.
   */
  expand(vol: BackendVolume, newSizeBytes: number, state: { mounted: boolean; device: string | null }): Promise<void | ExpandOutcome>;
}

/** capabilities.fencing: can stop this node's writes to a volume at once (cluster fencing). */
export interface Fencing {
  readonly capabilities: { readonly fencing: true };
  /**
   * Makes this node's copy of the volume unable to write, at once, even through files its
   * consumers hold open (loop: the filesystem's shutdown ioctl; every further write fails
   * with EIO; it then unmounts cleanly). True when it shut something down, false when
   * nothing of the volume is mounted here. A backend without it (a dir on shared storage):
   * an exclusive volume of it moves only when released.
   */
  fence(vol: BackendVolume): Promise<boolean>;
}

/** An ability's methods, absent: what a backend that does not declare it must look like. */
type Without<A> = { readonly [M in Exclude<keyof A, 'capabilities'>]?: never };

/**
 * A backend: the base, and for each optional ability either its capability and methods or
 * neither. A block volume needs a device, so `block: true` comes only with `attachable`.
 * Core code narrows with the guards below (canAttach(b), canSnapshot(b), ...) instead of `?.`.
 */
export type Backend = BackendBase
  & (Attaching | (Without<Attaching> & { readonly capabilities: { readonly attachable: false; readonly block: false } }))
  & (Snapshotting | (Without<Snapshotting> & { readonly capabilities: { readonly snapshots: false } }))
  & (Cloning | (Without<Cloning> & { readonly capabilities: { readonly clones: false } }))
  & (Expanding | (Without<Expanding> & { readonly capabilities: { readonly expansion: 'none' } }))
  & (Fencing | (Without<Fencing> & { readonly capabilities: { readonly fencing: false } }));

/**
 * A driver's capabilities as it declares them (`as const satisfies BackendCapabilities`, so the
 * abilities are literal types the compiler checks against its methods), with the scope its
 * settings choose (a shared root is 'global').
 * @example readonly capabilities: DeclaredCapabilities<typeof CAPABILITIES>;
 */
export type DeclaredCapabilities<C extends BackendCapabilities> = Omit<C, 'scope'> & { readonly scope: BackendCapabilities['scope'] };

export const canAttach = <B extends Backend>(b: B): b is B & Attaching => b.capabilities.attachable;
export const canSnapshot = <B extends Backend>(b: B): b is B & Snapshotting => b.capabilities.snapshots;
export const canClone = <B extends Backend>(b: B): b is B & Cloning => b.capabilities.clones;
export const canExpand = <B extends Backend>(b: B): b is B & Expanding => b.capabilities.expansion !== 'none';
export const canFence = <B extends Backend>(b: B): b is B & Fencing => b.capabilities.fencing;

/**
 * What expand did, when it knows better than its backend-wide capability: the loop driver
 * grows xfs and btrfs while mounted but ext4 only at the next mount. The core should take
 * `pendingFsGrowth` from here when expand returns it, and derive it from
 * capabilities.expansion only when expand returns nothing.
 */
export interface ExpandOutcome {
  /** The volume's filesystem still has to grow at its next mount. */
  readonly pendingFsGrowth: boolean;
}

export type Progress = (doneBytes: number, totalBytes: number) => void;

/** What every backend factory is given: its instance settings and its tools. */
export interface BackendContext {
  /** Instance name. */
  readonly name: string;
  /** Driver settings from the config, unvalidated: the factory validates and names bad keys. */
  readonly settings: Readonly<Record<string, unknown>>;
  /** Where berth keeps its state; backends put defaults under `${stateRoot}/backends/${name}`. */
  readonly stateRoot: string;
  /** The node this daemon runs as (config nodeId): the node attach and mount may act for on node-local storage. */
  readonly node: string;
  readonly exec: Exec;
  readonly log: Logger;
}

export type BackendFactory = (ctx: BackendContext) => Backend | Promise<Backend>;

/**
 * A driver as the registry knows it (backends/index.ts): how to build an instance, and the
 * programs its backends run, directly or through a core/os helper (names on core/os/exec.ts's
 * allow-list). The registry hands each backend an Exec that refuses any program its driver
 * did not declare, and checks at start-up that the declared ones are installed.
 * @example export const dirDriver: BackendDriver = { binaries: ['cp'], create: createDirBackend };
 */
export interface BackendDriver {
  readonly binaries: readonly string[];
  readonly create: BackendFactory;
}
