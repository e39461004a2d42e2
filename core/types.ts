/**
 * Read-only data shapes shared by the core, the frontends and the admin API.
 * Everything here is plain JSON (no Dates, no class instances) so it crosses the
 * admin API unchanged and the CLI can render it directly.
 */

/** Kubernetes' names for access modes; CSI and Docker modes map onto these. */
export const ACCESS_MODES = ['ReadWriteOnce', 'ReadWriteOncePod', 'ReadOnlyMany', 'ReadWriteMany'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export const VOLUME_MODES = ['filesystem', 'block'] as const;
/** `filesystem`: consumers get a directory. `block`: consumers get the raw device (loop only). */
export type VolumeMode = (typeof VOLUME_MODES)[number];

export const FS_TYPES = ['ext4', 'xfs', 'btrfs'] as const;
export type FsType = (typeof FS_TYPES)[number];

/**
 * creating / deleting are intents: a volume found in either state at start-up was
 * interrupted by a crash and is rolled back (creating) or forward (deleting).
 */
export type VolumeStatus = 'creating' | 'ready' | 'deleting' | 'error';

/** The frontend an operation came through; recorded on mount references and in logs. */
export type Frontend = 'admin' | 'docker' | 'csi' | 'flexvolume' | 'dvdcli' | 'core';

export interface VolumeSource {
  readonly kind: 'snapshot' | 'volume';
  /** Id of the snapshot or volume the data was copied from. */
  readonly id: string;
}

export interface Volume {
  /** Stable id ("vol-" + 26 chars); the CSI volume_id. Never reused. */
  readonly id: string;
  /** Unique name chosen by the user ([A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 bytes). */
  readonly name: string;
  /** Backend instance name from the config (not the driver name). */
  readonly backend: string;
  /** Requested size in bytes. 0 = unlimited (only where the backend does not enforce size). */
  readonly sizeBytes: number;
  /** Filesystem for loop volumes; null for `dir`, `btrfs` subvolumes and block volumes. */
  readonly fsType: FsType | null;
  readonly volumeMode: VolumeMode;
  readonly accessMode: AccessMode;
  readonly labels: Readonly<Record<string, string>>;
  /** Backend-specific options as accepted at create time (already validated). */
  readonly options: Readonly<Record<string, string>>;
  readonly source: VolumeSource | null;
  readonly status: VolumeStatus;
  /** RFC 3339. */
  readonly createdAt: string;
  /**
   * The nodes holding the volume: every node that has it attached or mounted has one
   * (in cluster mode, from every node's view).
   */
  readonly attachments: readonly Attachment[];
  /** This node's consumers (mount references are node facts). */
  readonly mounts: readonly MountRef[];
  /**
   * The node whose storage holds the volume, for a backend local to its node in cluster mode
   * (it can only be used there); null when any node can use it (shared storage, single node).
   */
  readonly node: string | null;
  /**
   * Where the volume's data is on this node while mounted (the directory consumers
   * should see; for loop volumes a subdirectory of the filesystem, so a new volume
   * looks empty), or the device path for block volumes; null when not mounted.
   */
  readonly path: string | null;
}

export interface Attachment {
  /** Node id (config `nodeId`, default the host name). */
  readonly node: string;
  /** Device path on that node (loop device) or null for backends with no device. */
  readonly device: string | null;
  /** Where the volume is mounted on that node (what its consumers there are given), or null. */
  readonly path: string | null;
  readonly readOnly: boolean;
  /**
   * true when the core attached the volume itself to serve a mount (Docker, dvdcli);
   * such an attachment goes away with the last mount reference.
   */
  readonly implicit: boolean;
  readonly createdAt: string;
}

/** One consumer's hold on the volume's mount. Only the last reference tears the mount down. */
export interface MountRef {
  /**
   * Opaque consumer identity, unique per volume: "docker:<mount ID>", "csi-stage:<path>",
   * "csi:<target path>", "flex:<pod dir>", "dvdcli", ...
   */
  readonly consumer: string;
  readonly frontend: Frontend;
  /** When set, the core bind-mounted the volume (or block device) onto this path for the consumer. */
  readonly target: string | null;
  readonly readOnly: boolean;
  readonly createdAt: string;
}

export interface Snapshot {
  readonly id: string; // "snap-" + 26 chars
  readonly name: string;
  readonly volumeId: string;
  readonly backend: string;
  readonly sizeBytes: number;
  readonly readyToUse: boolean;
  readonly createdAt: string;
}

export interface Capacity {
  readonly backend: string;
  readonly totalBytes: number;
  readonly availableBytes: number;
}

export interface VolumeStats {
  readonly totalBytes: number;
  readonly usedBytes: number;
  readonly availableBytes: number;
  readonly totalInodes: number | null;
  readonly usedInodes: number | null;
  readonly availableInodes: number | null;
  /**
   * true while the volume's filesystem is smaller than its device and has yet to grow to it
   * (loop ext4 expanded while mounted grows at its next mount); false once it has grown.
   * Only backends whose volumes have a filesystem of their own report it (loop); absent
   * elsewhere, and while a volume has no filesystem yet.
   */
  readonly fsGrowthPending?: boolean;
  /** Volume health (CSI volume condition). */
  readonly abnormal: boolean;
  readonly message: string;
}

export interface BackendInfo {
  readonly name: string;
  readonly driver: string;
  readonly capabilities: BackendCapabilities;
  readonly settings: Readonly<Record<string, unknown>>;
}

export interface BackendCapabilities {
  /** The backend refuses writes beyond sizeBytes (loop: device size; btrfs: qgroup). */
  readonly sizeEnforced: boolean;
  /** Volumes can be created with volumeMode 'block'. */
  readonly block: boolean;
  readonly snapshots: boolean;
  readonly clones: boolean;
  /** 'online' = grows while mounted; 'offline' = grows on next mount; 'none'. */
  readonly expansion: 'none' | 'offline' | 'online';
  /** Filesystems it can make; empty when the backend has no filesystem choice. */
  readonly fsTypes: readonly FsType[];
  /** Volumes have a device that must be attached before mounting (loop). */
  readonly attachable: boolean;
  /** Can stop this node's writes to a volume at once (cluster fencing: loop's filesystem shutdown). */
  readonly fencing: boolean;
  /** 'local': volumes live on this node only (Docker scope local, CSI topology). */
  readonly scope: 'local' | 'global';
}

/**
 * A node as it records itself in the cluster catalog (persistent: a node that died still shows).
 */
export interface NodeRecord {
  readonly id: string;
  /** Where operators and other nodes reach it (admin TCP, Docker TCP, the host's addresses). */
  readonly addresses: readonly string[];
  readonly version: string;
  /** Backend instances configured there, with whether each is shared. */
  readonly backends: readonly { readonly name: string; readonly driver: string; readonly shared: boolean }[];
  /** The node runs a fence agent: while the agent's lease lives, the node counts as alive. */
  readonly fenceAgent?: boolean;
  readonly startedAt: string;
  /** RFC 3339; refreshed while the node runs. */
  readonly lastSeen: string;
}

/** A node as `berth node ls` shows it. */
export interface NodeStatus extends NodeRecord {
  /** The daemon's lease is alive. */
  readonly alive: boolean;
  /** The node's fence agent's lease is alive. */
  readonly agentAlive: boolean;
  /** Volumes with an attachment on this node. */
  readonly attachedVolumes: number;
  /** The node's fence order or acknowledgement, if any (berth node fence). */
  readonly fence: FenceRecord | null;
  /** The node leads cluster-wide work (core/leader.ts); single node: always. */
  readonly leader: boolean;
}

/** This node's place in the cluster, for `berth status`. */
/** What the cluster layer knows of this node; the service adds the guard's part (ClusterStatus). */
export type ClusterBaseStatus = Omit<Extract<ClusterStatus, { mode: 'etcd' }>, 'selfFenced' | 'events' | 'fences'>;

export type ClusterStatus =
  | { readonly mode: 'embedded' }
  | {
    readonly mode: 'etcd';
    readonly endpoints: readonly string[];
    readonly prefix: string;
    /** The node's lease, null while it has none (etcd unreachable for longer than the TTL). */
    readonly lease: string | null;
    /** Since the last acknowledged keepalive was sent; null without a lease. */
    readonly sinceRenewalMs: number | null;
    readonly leaseTtlMs: number;
    /** Nodes the catalog knows. */
    readonly nodes: number;
    /** The node that leads cluster-wide work (core/leader.ts), null while none does (an election under way). */
    readonly leader: string | null;
    /** This node fenced itself (lost etcd for cluster.selfFenceMs): new mounts refused until it is back. */
    readonly selfFenced: boolean;
    /** Volumes fenced or released here, newest first. */
    readonly events: readonly { readonly at: string; readonly volume: string; readonly why: string }[];
    /** Fences in force in the cluster. */
    readonly fences: readonly FenceRecord[];
  };

/**
 * A fence on a node (cluster mode): an order that the node's copies of its exclusive
 * volumes stop writing, and once done, the acknowledgement that they did.
 */
export interface FenceRecord {
  readonly node: string;
  /** ordered: not acknowledged yet. done: acknowledged (or declared: the node had no live berth process). */
  readonly state: 'ordered' | 'done';
  /** operator: `berth node fence`; self: the node lost etcd and fenced itself; rejoin: it found volumes moved away. */
  readonly reason: 'operator' | 'self' | 'rejoin';
  /** The node (or operator's node) that ordered it. */
  readonly orderedBy: string;
  readonly orderedAt: string;
  /** Who carried it out: the node's daemon, its fence agent, or nobody (declared down: nothing alive there). */
  readonly doneBy: 'daemon' | 'agent' | 'declared' | null;
  readonly doneAt: string | null;
  /** Ids of the volumes whose filesystems were shut down there. */
  readonly volumes: readonly string[];
}

/** A request that the node holding a volume release it now (preemption). */
export interface PreemptRecord {
  readonly volumeId: string;
  /** The node that wants the volume. */
  readonly by: string;
  /** The node holding it when asked. */
  readonly holder: string;
  readonly at: string;
}
