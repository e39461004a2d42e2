/**
 * The VolumeService: the one interface every frontend (Docker, CSI, FlexVolume via the
 * admin API, dvdcli via the Docker frontend, admin REST) calls. Frontends translate a
 * protocol to these calls and BerthErrors back to the protocol; nothing else.
 *
 * Rules every implementation keeps:
 * - Idempotent: repeating a finished call with the same arguments returns the same result.
 *   create with the same name and the same parameters returns the existing volume;
 *   with different parameters it throws AlreadyExists.
 * - Serialized per volume: operations on one volume (by name) run one at a time. A caller
 *   that passes `{ wait: false }` gets Busy instead of waiting (CSI answers ABORTED).
 * - Validated first: bad input throws InvalidArgument naming the field before any state changes.
 * - Durable: a crash at any point is reconciled at the next start (see reconcile.ts).
 */
import type { ClusterStatus, NodeStatus } from './catalog/nodes.js';
import type { FenceRecord } from './types.js';
import type {
  AccessMode, BackendInfo, Capacity, Frontend, FsType, Snapshot, Volume, VolumeMode, VolumeStats,
} from './types.js';

/** Who is asking, for logs/metrics and lock behaviour. */
export interface OpContext {
  readonly frontend: Frontend;
  /** false: throw Busy at once if another operation holds the volume. Default true (wait, bounded). */
  readonly wait?: boolean;
  /**
   * Called with copied/total bytes while create fills a volume from a snapshot or another
   * volume, or createSnapshot copies one (backends that copy report it; instant ones
   * report once at the end or not at all).
   */
  readonly onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface CreateVolumeRequest {
  readonly name: string;
  /** Backend instance name; default: config `defaultBackend`. */
  readonly backend?: string;
  /** Bytes; default: the backend's default (0 = unlimited for dir). */
  readonly sizeBytes?: number;
  /** Default: the backend's default filesystem (loop: ext4). */
  readonly fsType?: FsType;
  readonly volumeMode?: VolumeMode;
  readonly accessMode?: AccessMode;
  readonly labels?: Readonly<Record<string, string>>;
  /** Backend-specific options; the backend refuses unknown keys naming "opts.<key>". */
  readonly options?: Readonly<Record<string, string>>;
  /** Fill the new volume from a snapshot or another volume (id or name). */
  readonly source?: { readonly kind: 'snapshot' | 'volume'; readonly ref: string };
  /**
   * Where the caller needs the volume (CSI accessibility requirements): a volume of a backend
   * local to its node is made on this node, so it is made only when this node is one of
   * these; otherwise ResourceExhausted naming `nodes` (make it on one of them). A shared
   * backend's volume is reachable from every node. Absent: anywhere. Never compared with an
   * existing volume: a retry finds the volume wherever it was made.
   */
  readonly nodes?: readonly string[];
  /** Cluster mode: mounts on another node take it from its holder at once (fencing its copy). */
  readonly preempt?: boolean;
}

export interface ListVolumesFilter {
  readonly backend?: string;
  /** Every given label must match. */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface RemoveVolumeRequest {
  /** Name or id. */
  readonly ref: string;
  /** Unmount every reference and detach first instead of refusing with InUse. */
  readonly force?: boolean;
}

export interface AttachRequest {
  readonly ref: string;
  /** Node id; default this node. */
  readonly node?: string;
  readonly readOnly?: boolean;
}

export interface MountRequest {
  readonly ref: string;
  /** Unique per volume: "docker:<ID>", "csi:<target>", "csi-stage:<path>", "flex:<dir>", "dvdcli". */
  readonly consumer: string;
  /**
   * When set, the core makes this path show the volume: it bind-mounts the volume's
   * path (or for block volumes the device, onto a file) there, creating the target
   * (directory or file) if missing. Without it the consumer gets the managed path.
   */
  readonly target?: string;
  readonly readOnly?: boolean;
  /** Mount options for the bind mount (validated against a whitelist). */
  readonly mountFlags?: readonly string[];
  /**
   * The filesystem the caller expects (a FlexVolume's kubernetes.io/fsType): a volume with
   * another one is refused as InvalidArgument naming fsType before anything is done. A
   * volume with no filesystem of its own (dir) matches any.
   */
  readonly fsType?: string;
  /**
   * Make `ref` (then a volume name) an ephemeral volume of this spec when it does not exist:
   * created and mounted in one operation, removed when its last reference is unmounted, and
   * removed by reconcile whenever it is found with no reference (core/ephemeral.ts). The same
   * request again finds the same volume; a volume of that name that is not ephemeral, or has
   * another spec, is refused. The spec is checked like a create request.
   */
  readonly ephemeral?: Omit<CreateVolumeRequest, 'name'>;
  /**
   * Cluster mode: when another node holds this single-node volume, ask it to give the volume
   * up now (its copy is shut down first) instead of refusing. A volume created with
   * `preempt` is always mounted this way.
   */
  readonly preempt?: boolean;
}

export interface MountResponse {
  readonly volume: Volume;
  /** The path the consumer should use: `target` when given, else the managed path. */
  readonly path: string;
  /** true when this consumer already held a reference (nothing changed). */
  readonly existing: boolean;
}

export interface UnmountRequest {
  readonly ref: string;
  readonly consumer: string;
}

export interface ExpandRequest {
  readonly ref: string;
  readonly sizeBytes: number;
}

export interface ExpandResponse {
  readonly volume: Volume;
  /** true when the filesystem still has to grow at the next mount (ext4 without CAP_SYS_RESOURCE). */
  readonly pendingFsGrowth: boolean;
}

export interface CreateSnapshotRequest {
  readonly name: string;
  /** Volume name or id. */
  readonly volume: string;
}

export interface ListSnapshotsFilter {
  readonly volume?: string;
}

export interface ServiceStatus {
  readonly version: string;
  readonly nodeId: string;
  readonly ready: boolean;
  readonly volumes: number;
  readonly backends: readonly string[];
  readonly startedAt: string;
  /** Single node (embedded catalog) or a member of an etcd cluster, with its lease. */
  readonly cluster: ClusterStatus;
}

export interface VolumeService {
  create(req: CreateVolumeRequest, ctx: OpContext): Promise<Volume>;
  /** By id first, then by name. NotFound when neither matches. */
  inspect(ref: string, ctx: OpContext): Promise<Volume>;
  /** Like inspect but null instead of NotFound. Must stay fast: Docker calls Get many times. */
  find(ref: string): Volume | null;
  /**
   * find, and in cluster mode a miss looks again after catching up with the catalog (a
   * volume made on another node a moment ago), as inspect does. Embedded mode: find.
   */
  findFresh(ref: string): Promise<Volume | null>;
  list(filter: ListVolumesFilter, ctx: OpContext): Promise<Volume[]>;
  /** NotFound is not an error for the caller to see twice: removing a removed volume throws NotFound. */
  remove(req: RemoveVolumeRequest, ctx: OpContext): Promise<void>;

  attach(req: AttachRequest, ctx: OpContext): Promise<Volume>;
  /** Refused with InUse while mount references depend on the attachment. Idempotent. */
  detach(req: { ref: string; node?: string }, ctx: OpContext): Promise<Volume>;

  /** Adds the consumer's reference (idempotent per consumer) and mounts on the first one. */
  mount(req: MountRequest, ctx: OpContext): Promise<MountResponse>;
  /**
   * Drops the consumer's reference; the last one unmounts (and detaches an implicit
   * attachment) and removes an ephemeral volume (the view returned is its last). Unknown consumer: no-op.
   */
  unmount(req: UnmountRequest, ctx: OpContext): Promise<Volume>;
  /** The managed path when mounted, else null. */
  path(ref: string, ctx: OpContext): Promise<string | null>;

  expand(req: ExpandRequest, ctx: OpContext): Promise<ExpandResponse>;
  stats(ref: string, ctx: OpContext): Promise<VolumeStats>;

  createSnapshot(req: CreateSnapshotRequest, ctx: OpContext): Promise<Snapshot>;
  inspectSnapshot(ref: string, ctx: OpContext): Promise<Snapshot>;
  listSnapshots(filter: ListSnapshotsFilter, ctx: OpContext): Promise<Snapshot[]>;
  deleteSnapshot(ref: string, ctx: OpContext): Promise<void>;

  capacity(backend: string | undefined, ctx: OpContext): Promise<Capacity[]>;
  backends(): BackendInfo[];
  status(): ServiceStatus;
  /** Every node the catalog knows (single node: this one), with liveness and what it holds. */
  nodes(): NodeStatus[];
  /** Cluster mode: fences a node (its exclusive filesystems shut down) and returns the acknowledged fence. */
  fenceNode(node: string, ctx: OpContext): Promise<FenceRecord>;
  /** Cluster mode: withdraws a node's fence. */
  unfenceNode(node: string, ctx: OpContext): Promise<void>;
  /** Cluster mode: releases the volume here and gives it to node `to`. */
  moveVolume(req: { ref: string; to: string }, ctx: OpContext): Promise<Volume>;
  /** This node's id (config nodeId). */
  readonly nodeId: string;
}
