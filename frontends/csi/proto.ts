/**
 * Loads berth's copy of the CSI v1 proto (frontends/csi/proto/csi.proto) and declares the
 * decoded message shapes the handlers work with.
 *
 * Decoding options, and why:
 * - keepCase: field names exactly as in the proto (volume_id, not volumeId).
 * - longs: String: int64 sizes arrive as decimal strings, so nothing above 2^53 is silently
 *   rounded; requests.ts parses them and refuses what a JS number cannot hold. Responses
 *   may carry plain numbers (protobufjs encodes both).
 * - enums: String: capability and access-mode names, not numbers.
 * - defaults + oneofs: absent scalars read as ''/0/false, absent messages as null, maps as {},
 *   and each oneof gets a virtual field naming the member that is set (access_type: 'mount').
 *
 * The .proto file is found next to this module: `./proto/csi.proto` relative to
 * frontends/csi/proto.ts when running from source, and relative to dist/berth.js in the
 * bundle, where scripts/build.mjs copies it to dist/proto/csi.proto.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface CsiServices {
  readonly Identity: ServiceDefinition;
  readonly Controller: ServiceDefinition;
  readonly Node: ServiceDefinition;
}

/** Where the proto is at run time (source tree or bundle). */
export function csiProtoPath(): string {
  const path = fileURLToPath(new URL('./proto/csi.proto', import.meta.url));
  if (!existsSync(path)) throw new Error(`CSI proto not found at ${path} (the build copies it to dist/proto/csi.proto)`);
  return path;
}

/** Parses the proto; call once per frontend (the composition root builds one frontend). */
export function loadCsiServices(): CsiServices {
  const def = loadSync(csiProtoPath(), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as unknown as {
    csi: { v1: Record<'Identity' | 'Controller' | 'Node', { service: ServiceDefinition }> };
  };
  return { Identity: pkg.csi.v1.Identity.service, Controller: pkg.csi.v1.Controller.service, Node: pkg.csi.v1.Node.service };
}

// ---- Decoded message shapes (only the fields berth reads or writes) ----

export type StringMap = Record<string, string>;
/** int64 as decoded (string) or as berth sends it (number). */
export type Int64 = string | number;

export const CSI_ACCESS_MODES = [
  'UNKNOWN', 'SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_SINGLE_WRITER', 'MULTI_NODE_MULTI_WRITER', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER',
] as const;
export type CsiAccessMode = (typeof CSI_ACCESS_MODES)[number];

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: { fs_type: string; mount_flags: string[]; volume_mount_group: string } | null;
  access_mode: { mode: CsiAccessMode } | null;
  access_type?: 'block' | 'mount';
}

export interface CapacityRange { required_bytes: Int64; limit_bytes: Int64 }
export interface Topology { segments: StringMap }
export interface VolumeContentSource {
  snapshot?: { snapshot_id: string } | null;
  volume?: { volume_id: string } | null;
  type?: 'snapshot' | 'volume';
}

export interface CsiVolume {
  capacity_bytes: Int64;
  volume_id: string;
  volume_context: StringMap;
  content_source: VolumeContentSource | null;
  accessible_topology: Topology[];
}

export interface VolumeCondition { abnormal: boolean; message: string }

export interface CsiSnapshot {
  size_bytes: Int64;
  snapshot_id: string;
  source_volume_id: string;
  creation_time: { seconds: Int64; nanos: number } | null;
  ready_to_use: boolean;
}

export interface CreateVolumeRequest {
  name: string;
  capacity_range: CapacityRange | null;
  volume_capabilities: VolumeCapability[];
  parameters: StringMap;
  secrets: StringMap;
  volume_content_source: VolumeContentSource | null;
  accessibility_requirements: { requisite: Topology[]; preferred: Topology[] } | null;
  mutable_parameters: StringMap;
}
export interface DeleteVolumeRequest { volume_id: string }
export interface ControllerPublishVolumeRequest {
  volume_id: string; node_id: string; volume_capability: VolumeCapability | null; readonly: boolean; volume_context: StringMap;
}
export interface ControllerUnpublishVolumeRequest { volume_id: string; node_id: string }
export interface ValidateVolumeCapabilitiesRequest {
  volume_id: string; volume_context: StringMap; volume_capabilities: VolumeCapability[]; parameters: StringMap;
  mutable_parameters: StringMap;
}
export interface ListVolumesRequest { max_entries: number; starting_token: string }
export interface GetCapacityRequest {
  volume_capabilities: VolumeCapability[]; parameters: StringMap; accessible_topology: Topology | null;
}
export interface ControllerGetVolumeRequest { volume_id: string }
export interface ControllerExpandVolumeRequest {
  volume_id: string; capacity_range: CapacityRange | null; volume_capability: VolumeCapability | null;
}
export interface CreateSnapshotRequest { source_volume_id: string; name: string; parameters: StringMap }
export interface DeleteSnapshotRequest { snapshot_id: string }
export interface ListSnapshotsRequest { max_entries: number; starting_token: string; source_volume_id: string; snapshot_id: string }

export interface NodeStageVolumeRequest {
  volume_id: string; publish_context: StringMap; staging_target_path: string;
  volume_capability: VolumeCapability | null; volume_context: StringMap;
}
export interface NodeUnstageVolumeRequest { volume_id: string; staging_target_path: string }
export interface NodePublishVolumeRequest {
  volume_id: string; publish_context: StringMap; staging_target_path: string; target_path: string;
  volume_capability: VolumeCapability | null; readonly: boolean; volume_context: StringMap;
}
export interface NodeUnpublishVolumeRequest { volume_id: string; target_path: string }
export interface NodeGetVolumeStatsRequest { volume_id: string; volume_path: string; staging_target_path: string }
export interface NodeExpandVolumeRequest {
  volume_id: string; volume_path: string; capacity_range: CapacityRange | null; staging_target_path: string;
  volume_capability: VolumeCapability | null;
}

/** A unary handler as berth writes them: a request in, a response (or a thrown error) out. */
export type Handler<Req = never, Res = unknown> = (req: Req) => Promise<Res>;
/** One service's handlers by RPC name. */
export type Handlers = Record<string, Handler<never>>;
