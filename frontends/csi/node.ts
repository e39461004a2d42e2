/**
 * CSI Node service. Each RPC is one service.mount/unmount with a consumer reference:
 * - NodeStage   -> consumer "csi-stage:<staging path>". For filesystem volumes of attachable
 *   backends (loop) the core attaches the device, makes/mounts the filesystem and binds it at
 *   the staging path. Where there is nothing to stage (dir directories, raw block devices)
 *   the reference alone is recorded: the staging path is private to the plugin, and
 *   skipping a bind mount there saves a mount(8) and umount(8) per volume lifecycle.
 * - NodePublish -> consumer "csi:<target path>", target = target path: the core binds the
 *   volume (or, for block access, the device onto a file it creates) there, read-only
 *   when asked; NodeUnpublish unbinds and removes the target.
 * - An ephemeral inline volume (volume_context csi.storage.k8s.io/ephemeral=true, no
 *   staging) is made by its NodePublish and removed by its NodeUnpublish (ephemeral.ts).
 * References live in the core's store, so a staged volume survives a daemon restart.
 */
import {
  alreadyExists, failedPrecondition, invalidArgument, isBerthError, notFound,
  type Config, type OpContext, type Volume, type VolumeService,
} from '../../core/index.js';
import { renameErrorField } from '../../core/errors.js';
import { requireVolume } from './controller.js';
import type * as pb from './proto.js';
import { featuresOf } from './features.js';
import { parseCapacityRange, requireCapability, requirePath, requireString } from './requests.js';
import { nodeTopology, type CsiIdentity } from './topology.js';
import { capabilityMismatch, isReadOnlyMode } from './volumes.js';
import { asAttributeError, EPHEMERAL_CONTEXT_KEY, ephemeralRequest, findNodeVolume, isEphemeralPublish, isGoneEphemeral } from './ephemeral.js';

export interface NodeDeps {
  readonly service: VolumeService;
  readonly id: CsiIdentity;
  readonly config: Pick<Config['csi'], 'maxVolumesPerNode' | 'ephemeral'>;
}

export const stageConsumer = (stagingPath: string) => `csi-stage:${stagingPath}`;
export const publishConsumer = (targetPath: string) => `csi:${targetPath}`;

/**
 * The core names its fields its own way: the target "target" (the path it binds, here the
 * staging or target path) and bind-mount flags "mountFlags[i]". CSI users know them by
 * their proto names.
 */
async function withCsiFields<T>(names: { target: string; flags?: string }, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (names.flags && isBerthError(err) && err.kind === 'InvalidArgument' && err.field?.startsWith('mountFlags')) {
      throw invalidArgument(names.flags + err.field.slice('mountFlags'.length), err.message.replace(/^mountFlags(\[\d+\])?: /, ''));
    }
    throw renameErrorField(err, { target: names.target });
  }
}

const trimSlash = (p: string) => (p.length > 1 ? p.replace(/\/+$/, '') : p);
const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);

/**
 * A target path at, inside or around the staging path would put the workload's bind on
 * the staging mount (or the staging mount inside the workload's view), and its unpublish
 * would take the staging bind down: refused, naming target_path.
 */
function checkTargetApart(target: string, staging: string): void {
  const t = trimSlash(target);
  const s = trimSlash(staging);
  if (t === s) throw invalidArgument('target_path', `"${target}" is the staging_target_path; publish to a path of its own`);
  if (within(t, s)) throw invalidArgument('target_path', `"${target}" is inside staging_target_path "${staging}"`);
  if (within(s, t)) throw invalidArgument('target_path', `"${target}" holds staging_target_path "${staging}"`);
}

/** Every path on this node where the volume can be seen: publish targets, staging paths, the managed path. */
function volumePaths(vol: Volume): Set<string> {
  const paths = new Set<string>();
  for (const m of vol.mounts) {
    if (m.target) paths.add(m.target);
    if (m.consumer.startsWith('csi-stage:')) paths.add(m.consumer.slice('csi-stage:'.length));
  }
  if (vol.path) paths.add(vol.path);
  return paths;
}

/** @example server.addService(services.Node, wrap(createNodeHandlers(deps))) */
export function createNodeHandlers(d: NodeDeps) {
  const { service, id } = d;
  const ctx: OpContext = { frontend: 'csi', wait: false };
  const attachable = (v: Volume) => service.backends().find((b) => b.name === v.backend)?.capabilities.attachable ?? false;

  /** An ephemeral inline volume: made (or found again) and published in one core call. */
  async function publishEphemeral(req: pb.NodePublishVolumeRequest, target: string) {
    const cap = requireCapability(req.volume_capability, 'volume_capability');
    const eph = ephemeralRequest(req, cap, service.backends(), d.config.ephemeral);
    const readOnly = req.readonly || isReadOnlyMode(cap.mode);
    const consumer = publishConsumer(target);
    const existing = service.find(eph.name)?.mounts.find((m) => m.consumer === consumer);
    if (existing && existing.readOnly !== readOnly) {
      throw alreadyExists(`volume ${req.volume_id} is already published at ${target} ${existing.readOnly ? 'read-only' : 'read-write'}`);
    }
    try {
      await withCsiFields({ target: 'target_path', flags: 'volume_capability.mount.mount_flags' }, () =>
        service.mount({ ref: eph.name, consumer, target, readOnly, mountFlags: cap.mountFlags, ephemeral: eph.create }, ctx));
    } catch (err) {
      throw asAttributeError(err, eph.fields);
    }
    return {};
  }

  return {
    async NodeStageVolume(req: pb.NodeStageVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const staging = requirePath(req.staging_target_path, 'staging_target_path');
      const cap = requireCapability(req.volume_capability, 'volume_capability');
      const vol = requireVolume(service, volumeId);
      const mismatch = capabilityMismatch(vol, cap);
      if (mismatch) throw invalidArgument('volume_capability', mismatch);
      const consumer = stageConsumer(staging);
      if (vol.mounts.some((m) => m.consumer === consumer)) return {}; // already staged here
      const bind = vol.volumeMode === 'filesystem' && attachable(vol);
      await withCsiFields({ target: 'staging_target_path' }, () =>
        service.mount({ ref: volumeId, consumer, ...(bind ? { target: staging } : {}) }, ctx));
      return {};
    },

    async NodeUnstageVolume(req: pb.NodeUnstageVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const staging = requirePath(req.staging_target_path, 'staging_target_path');
      requireVolume(service, volumeId);
      await withCsiFields({ target: 'staging_target_path' }, () => service.unmount({ ref: volumeId, consumer: stageConsumer(staging) }, ctx));
      return {};
    },

    async NodePublishVolume(req: pb.NodePublishVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const target = requirePath(req.target_path, 'target_path');
      if (isEphemeralPublish(req)) return publishEphemeral(req, target);
      if (!req.staging_target_path) {
        throw invalidArgument('staging_target_path', `is required: berth stages every volume (an ephemeral inline volume says so with volume_context ${EPHEMERAL_CONTEXT_KEY}: "true", sent by kubelet when the CSIDriver has podInfoOnMount: true)`);
      }
      const staging = requirePath(req.staging_target_path, 'staging_target_path');
      const cap = requireCapability(req.volume_capability, 'volume_capability');
      checkTargetApart(target, staging);
      const vol = requireVolume(service, volumeId);
      const mismatch = capabilityMismatch(vol, cap);
      if (mismatch) throw invalidArgument('volume_capability', mismatch);
      if (!vol.mounts.some((m) => m.consumer === stageConsumer(staging))) {
        throw failedPrecondition(`volume ${volumeId} is not staged at ${staging}: call NodeStageVolume first`);
      }
      const readOnly = req.readonly || isReadOnlyMode(cap.mode);
      const consumer = publishConsumer(target);
      const existing = vol.mounts.find((m) => m.consumer === consumer);
      if (existing) {
        if (existing.readOnly !== readOnly) {
          throw alreadyExists(`volume ${volumeId} is already published at ${target} ${existing.readOnly ? 'read-only' : 'read-write'}`);
        }
        return {};
      }
      await withCsiFields({ target: 'target_path', flags: 'volume_capability.mount.mount_flags' }, () =>
        service.mount({ ref: volumeId, consumer, target, readOnly, mountFlags: cap.mountFlags }, ctx));
      return {};
    },

    async NodeUnpublishVolume(req: pb.NodeUnpublishVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const target = requirePath(req.target_path, 'target_path');
      const vol = findNodeVolume(service, volumeId);
      if (!vol) {
        if (isGoneEphemeral(volumeId)) return {};
        throw notFound(`volume ${volumeId} does not exist`);
      }
      await withCsiFields({ target: 'target_path' }, () => service.unmount({ ref: vol.id, consumer: publishConsumer(target) }, ctx));
      return {};
    },

    async NodeGetVolumeStats(req: pb.NodeGetVolumeStatsRequest) {
      // volume_path is only compared with the volume's known paths (never used as a path),
      // and csi-sanity expects NOT_FOUND, not INVALID_ARGUMENT, for a relative one.
      const volumeId = requireString(req.volume_id, 'volume_id');
      const volumePath = requireString(req.volume_path, 'volume_path');
      const vol = findNodeVolume(service, volumeId);
      if (!vol) throw notFound(`volume ${volumeId} does not exist`);
      if (!volumePaths(vol).has(trimSlash(volumePath))) throw notFound(`volume ${volumeId} is not published or staged at ${volumePath}`);
      const s = await service.stats(vol.id, ctx);
      const usage: object[] = [{ unit: 'BYTES', total: s.totalBytes, used: s.usedBytes, available: s.availableBytes }];
      if (s.totalInodes !== null) {
        usage.push({ unit: 'INODES', total: s.totalInodes, used: s.usedInodes ?? 0, available: s.availableInodes ?? 0 });
      }
      return { usage, volume_condition: { abnormal: s.abnormal, message: s.message } };
    },

    /**
     * Nothing to do on the node: the core grows filesystems itself (online, or at the next
     * mount). This answers whether the filesystem at volume_path has grown to its device
     * yet, as the backend measures it (stats' fsGrowthPending, from the superblock);
     * FAILED_PRECONDITION while it waits for the next mount (ext4 on these machines), so
     * the CO keeps the resize pending instead of reporting a size the pod cannot see.
     */
    async NodeExpandVolume(req: pb.NodeExpandVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const volumePath = requireString(req.volume_path, 'volume_path');
      const range = parseCapacityRange(req.capacity_range, 'capacity_range');
      const vol = requireVolume(service, volumeId);
      if (!volumePaths(vol).has(trimSlash(volumePath))) throw notFound(`volume ${volumeId} is not published or staged at ${volumePath}`);
      const want = range.required || range.limit || vol.sizeBytes;
      // Block devices have no filesystem; backends without one of their own (dir, btrfs
      // subvolumes) report no fsGrowthPending. In practice only ext4 waits for a mount (no
      // CAP_SYS_RESOURCE for online resize2fs here): xfs and btrfs grow online.
      if (vol.volumeMode === 'block') return { capacity_bytes: vol.sizeBytes };
      const s = await service.stats(volumeId, ctx);
      if (s.fsGrowthPending === true) {
        throw failedPrecondition(`the filesystem of volume ${volumeId} is ${s.totalBytes} bytes and grows to ${want} at its next mount (unpublish and unstage it, or restart the pod)`);
      }
      return { capacity_bytes: vol.sizeBytes };
    },

    async NodeGetCapabilities() {
      const types = ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'];
      if (featuresOf(service.backends()).expansion !== 'none') types.push('EXPAND_VOLUME');
      return { capabilities: types.map((type) => ({ rpc: { type } })) };
    },

    async NodeGetInfo() {
      return { node_id: id.nodeId, max_volumes_per_node: d.config.maxVolumesPerNode, accessible_topology: nodeTopology(id) };
    },
  };
}
