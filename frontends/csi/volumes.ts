/**
 * berth Volume <-> CSI shapes, shared by the controller and node services: access-mode
 * mapping, capability compatibility, and rendering a Volume as a csi.v1.Volume (its topology
 * from topology.ts). Pure functions of their arguments.
 */
import type { AccessMode, BackendInfo, Volume } from '../../core/index.js';
import type { CsiAccessMode, CsiVolume, VolumeCondition } from './proto.js';
import type { Capability } from './requests.js';
import { volumeTopology, type CsiIdentity } from './topology.js';

/**
 * The berth access mode a set of requested CSI modes needs: the widest of them.
 * Kubernetes maps RWO -> SINGLE_NODE_WRITER, RWOP -> SINGLE_NODE_SINGLE_WRITER,
 * ROX -> MULTI_NODE_READER_ONLY, RWX -> MULTI_NODE_MULTI_WRITER.
 */
export function accessModeFor(modes: readonly Exclude<CsiAccessMode, 'UNKNOWN'>[]): AccessMode {
  if (modes.some((m) => m === 'MULTI_NODE_MULTI_WRITER' || m === 'MULTI_NODE_SINGLE_WRITER')) return 'ReadWriteMany';
  if (modes.some((m) => m === 'MULTI_NODE_READER_ONLY')) return 'ReadOnlyMany';
  if (modes.length > 0 && modes.every((m) => m === 'SINGLE_NODE_SINGLE_WRITER')) return 'ReadWriteOncePod';
  return 'ReadWriteOnce';
}

/** The CSI modes a volume with this berth access mode satisfies. */
function modesOf(mode: AccessMode): readonly CsiAccessMode[] {
  const single = ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_MULTI_WRITER', 'SINGLE_NODE_SINGLE_WRITER'] as const;
  switch (mode) {
    case 'ReadWriteOncePod':
      return ['SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_READER_ONLY'];
    case 'ReadWriteOnce':
      return single;
    case 'ReadOnlyMany':
      return ['MULTI_NODE_READER_ONLY', 'SINGLE_NODE_READER_ONLY'];
    case 'ReadWriteMany':
      return [...single, 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER', 'MULTI_NODE_MULTI_WRITER'];
    default: {
      const never: never = mode;
      return never;
    }
  }
}

/** Why `cap` does not fit `vol`, or null when it does. */
export function capabilityMismatch(vol: Volume, cap: Capability): string | null {
  if (cap.accessType === 'block' && vol.volumeMode !== 'block') return `volume ${vol.id} is a filesystem volume, not a block volume`;
  if (cap.accessType === 'mount' && vol.volumeMode === 'block') return `volume ${vol.id} is a block volume, not a filesystem volume`;
  if (cap.accessType === 'mount' && cap.fsType && vol.fsType && cap.fsType !== vol.fsType) {
    return `volume ${vol.id} has filesystem ${vol.fsType}, not ${cap.fsType}`;
  }
  if (!modesOf(vol.accessMode).includes(cap.mode)) return `volume ${vol.id} (${vol.accessMode}) does not allow ${cap.mode}`;
  return null;
}

/** Modes that only ever allow reading. */
export const isReadOnlyMode = (mode: CsiAccessMode): boolean =>
  mode === 'SINGLE_NODE_READER_ONLY' || mode === 'MULTI_NODE_READER_ONLY';

/** volume_context: what NodeStage/NodePublish may find useful; identical for every repeat of a create. */
export function volumeContext(vol: Volume): Record<string, string> {
  const ctx: Record<string, string> = { name: vol.name, backend: vol.backend, volumeMode: vol.volumeMode };
  if (vol.fsType) ctx.fsType = vol.fsType;
  return ctx;
}

export function toCsiVolume(vol: Volume, backend: BackendInfo | undefined, id: CsiIdentity): CsiVolume {
  return {
    capacity_bytes: vol.sizeBytes,
    volume_id: vol.id,
    volume_context: volumeContext(vol),
    content_source: vol.source
      ? vol.source.kind === 'snapshot'
        ? { snapshot: { snapshot_id: vol.source.id } }
        : { volume: { volume_id: vol.source.id } }
      : null,
    accessible_topology: volumeTopology(vol, backend, id),
  };
}

/** Every node holding the volume (the catalog's attachments: every node's in cluster mode, implicit ones too). */
export const publishedNodeIds = (vol: Volume): string[] => [...new Set(vol.attachments.map((a) => a.node))];

export function volumeCondition(vol: Volume): VolumeCondition {
  if (vol.status === 'error') return { abnormal: true, message: `volume ${vol.id} is in error state` };
  if (vol.status !== 'ready') return { abnormal: true, message: `volume ${vol.id} is ${vol.status}` };
  return { abnormal: false, message: 'volume is healthy' };
}
