/**
 * CSI Controller snapshot and expansion RPCs: CreateSnapshot, DeleteSnapshot,
 * ListSnapshots, ControllerExpandVolume. Served always, advertised (ControllerGetCapabilities)
 * only when a configured backend declares the ability (features.ts).
 * GetSnapshot is deliberately not served: csi-sanity v5.3.1 refuses plugins that advertise it.
 */
import {
  invalidArgument, isBerthError, notFound, renameErrorField,
  type OpContext, type Snapshot, type VolumeService,
} from '../../core/index.js';
import { lookupVolume, requireVolume } from './controller.js';
import { paginate, SNAPSHOT_TOKEN } from './pagination.js';
import type * as pb from './proto.js';
import { berthName, parseCapacityRange, parseMaxEntries, requireCapability, requireString } from './requests.js';
import { capabilityMismatch } from './volumes.js';

export interface SnapshotDeps {
  readonly service: VolumeService;
}

export function toCsiSnapshot(s: Snapshot): pb.CsiSnapshot {
  const ms = Date.parse(s.createdAt);
  return {
    size_bytes: s.sizeBytes,
    snapshot_id: s.id,
    source_volume_id: s.volumeId,
    creation_time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    ready_to_use: s.readyToUse,
  };
}

/** @example server.addService(services.Controller, wrap({ ...controller, ...createSnapshotHandlers(deps) })) */
export function createSnapshotHandlers(d: SnapshotDeps) {
  const { service } = d;
  const ctx: OpContext = { frontend: 'csi', wait: false };

  /** The snapshot whose id this is, or null (NotFound from the core is not an error here). */
  async function findSnapshot(snapshotId: string): Promise<Snapshot | null> {
    try {
      const s = await service.inspectSnapshot(snapshotId, ctx);
      return s.id === snapshotId ? s : null;
    } catch (err) {
      if (isBerthError(err) && err.kind === 'NotFound') return null;
      throw err;
    }
  }

  return {
    async CreateSnapshot(req: pb.CreateSnapshotRequest) {
      const sourceId = requireString(req.source_volume_id, 'source_volume_id');
      const { name } = berthName(req.name, 'name');
      requireVolume(service, sourceId);
      const snap = await service.createSnapshot({ name, volume: sourceId }, ctx);
      return { snapshot: toCsiSnapshot(snap) };
    },

    async DeleteSnapshot(req: pb.DeleteSnapshotRequest) {
      const snapshotId = requireString(req.snapshot_id, 'snapshot_id');
      if (!(await findSnapshot(snapshotId))) return {}; // already gone: idempotent
      try {
        await service.deleteSnapshot(snapshotId, ctx);
      } catch (err) {
        if (!(isBerthError(err) && err.kind === 'NotFound')) throw err;
      }
      return {};
    },

    async ListSnapshots(req: pb.ListSnapshotsRequest) {
      const max = parseMaxEntries(req.max_entries, 'max_entries');
      let snaps: Snapshot[];
      if (req.snapshot_id) {
        const s = await findSnapshot(req.snapshot_id);
        snaps = s && (!req.source_volume_id || s.volumeId === req.source_volume_id) ? [s] : [];
      } else if (req.source_volume_id) {
        snaps = lookupVolume(service, req.source_volume_id)
          ? await service.listSnapshots({ volume: req.source_volume_id }, ctx)
          : [];
      } else {
        snaps = await service.listSnapshots({}, ctx);
      }
      const page = paginate(snaps, req.starting_token ?? '', max, SNAPSHOT_TOKEN);
      return { entries: page.entries.map((s) => ({ snapshot: toCsiSnapshot(s) })), next_token: page.nextToken };
    },

    async ControllerExpandVolume(req: pb.ControllerExpandVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      if (!req.capacity_range) throw invalidArgument('capacity_range', 'is required');
      const range = parseCapacityRange(req.capacity_range, 'capacity_range');
      if (range.required === 0 && range.limit === 0) throw invalidArgument('capacity_range', 'give required_bytes or limit_bytes');
      const vol = lookupVolume(service, volumeId);
      if (!vol) throw notFound(`volume ${volumeId} does not exist`);
      if (req.volume_capability) {
        const mismatch = capabilityMismatch(vol, requireCapability(req.volume_capability, 'volume_capability'));
        if (mismatch) throw invalidArgument('volume_capability', mismatch);
      }
      const want = range.required || range.limit;
      // Growing to a size it already has is a repeat of a finished call: answer the same.
      if (vol.sizeBytes >= want) return { capacity_bytes: vol.sizeBytes, node_expansion_required: false };
      // The core and the backend name the size "size"; this request gave it as capacity_range.
      const res = await service.expand({ ref: volumeId, sizeBytes: want }, ctx).catch((err: unknown) => {
        throw renameErrorField(err, { size: 'capacity_range' });
      });
      // The core grows the filesystem itself: online (xfs, btrfs) or, where it cannot while
      // mounted (ext4 here), at the next mount. In that case the CO is told a node step is
      // still due, and NodeExpandVolume reports the growth only once it has happened.
      return { capacity_bytes: res.volume.sizeBytes, node_expansion_required: res.pendingFsGrowth };
    },
  };
}
