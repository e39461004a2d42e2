/**
 * CSI Controller service: volume lifecycle, capability checks, listing, capacity and
 * node attachment (ControllerPublish/Unpublish = service.attach/detach for the named node).
 * The snapshot and expansion RPCs live in snapshots.ts; index.ts serves both sets as the
 * Controller service. In cluster mode any node's controller serves every node: the catalog
 * is shared, node_id names a member of the cluster, and the core decides who may attach.
 *
 * Every handler checks its request first (requests.ts), then makes the service call with
 * `wait: false`, so a second concurrent operation on a volume is ABORTED, as CSI wants.
 */
import {
  alreadyExists, clip, failedPrecondition, invalidArgument, isBerthError, notFound, optionFieldNames, parseVolumeOptions, renameErrorField,
  resourceExhausted, setOwn,
  type BackendInfo, type CreateVolumeRequest as BerthCreate, type FsType, type OpContext, type Volume, type VolumeService,
} from '../../core/index.js';
import type { Config } from '../../core/index.js';
import { featuresOf } from './features.js';
import { paginate, VOLUME_TOKEN } from './pagination.js';
import type * as pb from './proto.js';
import {
  berthName, parseCapacityRange, parseMaxEntries, requireCapabilities, requireCapability, requireString, type Capability,
} from './requests.js';
import { otherNodeOf, wantedNodes, type CsiIdentity } from './topology.js';
import { accessModeFor, capabilityMismatch, isReadOnlyMode, publishedNodeIds, toCsiVolume, volumeCondition } from './volumes.js';

export interface ControllerDeps {
  readonly service: VolumeService;
  readonly id: CsiIdentity;
  readonly config: Pick<Config['csi'], 'maxVolumesPerNode'>;
}

/** Label holding the CO's name when it is not a valid berth name (requests.ts berthName). */
const CSI_NAME_LABEL = 'csi.berth.dev/name';

/** Parameter keys the Kubernetes external-provisioner adds (--extra-create-metadata); kept as labels. */
const K8S_PARAMETER_PREFIX = 'csi.storage.k8s.io/';

/** The volume whose CSI volume_id this is; null when there is none (a name is not an id). */
export function lookupVolume(service: VolumeService, volumeId: string): Volume | null {
  const v = service.find(volumeId);
  return v && v.id === volumeId ? v : null;
}

export function requireVolume(service: VolumeService, volumeId: string): Volume {
  const v = lookupVolume(service, volumeId);
  if (!v) throw notFound(`volume ${volumeId} does not exist`);
  return v;
}

/**
 * ControllerPublish's node_id must name a node: this one on a single node; in cluster mode a
 * member the catalog knows (alive or not: whether it may have the volume is the core's call).
 * Anything else is NOT_FOUND, as the spec says for an unknown node.
 */
function requireKnownNode(service: VolumeService, id: CsiIdentity, nodeId: string): void {
  if (service.status().cluster.mode === 'embedded') {
    if (nodeId !== id.nodeId) throw notFound(`node ${clip(nodeId)} is not served by this plugin (this node is ${id.nodeId})`);
    return;
  }
  if (!service.nodes().some((n) => n.id === nodeId)) {
    throw notFound(`node ${clip(nodeId)} is not a member of this berth cluster (see berth node ls)`);
  }
}

/** @example server.addService(services.Controller, wrap(createControllerHandlers(deps))) */
export function createControllerHandlers(d: ControllerDeps) {
  const { service, id } = d;
  const ctx: OpContext = { frontend: 'csi', wait: false };
  const backendInfo = (name: string): BackendInfo | undefined => service.backends().find((b) => b.name === name);
  const render = (v: Volume) => toCsiVolume(v, backendInfo(v.backend), id);

  function status(v: Volume) {
    return { published_node_ids: publishedNodeIds(v), volume_condition: volumeCondition(v) };
  }

  return {
    async CreateVolume(req: pb.CreateVolumeRequest) {
      const { name, mapped } = berthName(req.name, 'name');
      const caps = requireCapabilities(req.volume_capabilities, 'volume_capabilities');
      const range = parseCapacityRange(req.capacity_range, 'capacity_range');
      const { params, labels: k8sLabels } = splitParameters(req.parameters ?? {});
      const opts = parseVolumeOptions(params, 'parameters');

      const block = caps.some((c) => c.accessType === 'block');
      if (block && caps.some((c) => c.accessType === 'mount')) {
        throw invalidArgument('volume_capabilities', 'mixes block and mount access types; a volume is one or the other');
      }
      const volumeMode = block ? 'block' : 'filesystem';
      if (opts.volumeMode && opts.volumeMode !== volumeMode) {
        throw invalidArgument('parameters.mode', `"${opts.volumeMode}" contradicts the ${block ? 'block' : 'mount'} access type requested`);
      }
      const accessMode = accessModeFor(caps.map((c) => c.mode));
      if (opts.accessMode && opts.accessMode !== accessMode) {
        throw invalidArgument('parameters.accessMode', `"${opts.accessMode}" contradicts the access modes requested (${accessMode})`);
      }
      const nodes = wantedNodes(req.accessibility_requirements, id);

      const fromContent = contentSource(req.volume_content_source);
      const source = fromContent ?? opts.source;
      const sizeBytes = range.required || range.limit || opts.sizeBytes;
      const create: BerthCreate = {
        name,
        volumeMode,
        accessMode,
        ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
        ...(sizeBytes !== undefined && sizeBytes > 0 ? { sizeBytes } : {}),
        ...fsTypeFor(opts.fsType, caps, opts.backend, service.backends()),
        ...(opts.labels || Object.keys(k8sLabels).length || mapped
          ? { labels: { ...opts.labels, ...k8sLabels, ...(mapped ? { [CSI_NAME_LABEL]: req.name } : {}) } }
          : {}),
        ...(opts.options ? { options: opts.options } : {}),
        ...(source ? { source } : {}),
        ...(nodes ? { nodes } : {}),
      };
      try {
        return { volume: render(await service.create(create, ctx)) };
      } catch (err) {
        if (source) {
          const unusable = unusableSource(err, fromContent ? 'volume_content_source' : `parameters.${SOURCE_PARAMETER[source.kind]}`);
          if (unusable !== err) throw unusable;
        }
        // The core names its own fields ("backend", "size"); name them as this request gave
        // them: a StorageClass parameter, or the capacity range that set the size.
        const given: Record<string, string> = { ...optionFieldNames(params, 'parameters'), nodes: 'accessibility_requirements' };
        if (range.required || range.limit) given.size = 'capacity_range';
        throw renameErrorField(err, given);
      }
    },

    async DeleteVolume(req: pb.DeleteVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      if (!lookupVolume(service, volumeId)) return {}; // already gone: DeleteVolume is idempotent
      try {
        await service.remove({ ref: volumeId }, ctx);
      } catch (err) {
        if (!(isBerthError(err) && err.kind === 'NotFound')) throw err;
      }
      return {};
    },

    async ControllerPublishVolume(req: pb.ControllerPublishVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const nodeId = requireString(req.node_id, 'node_id');
      const cap = requireCapability(req.volume_capability, 'volume_capability');
      const vol = requireVolume(service, volumeId);
      requireKnownNode(service, id, nodeId);
      if (vol.node !== null && vol.node !== nodeId) {
        throw failedPrecondition(`volume ${volumeId} lives on node ${vol.node} (backend "${vol.backend}" keeps a volume on its node); it can only be published there`);
      }
      const mismatch = capabilityMismatch(vol, cap);
      if (mismatch) throw invalidArgument('volume_capability', mismatch);
      const readOnly = req.readonly || isReadOnlyMode(cap.mode);

      const here = vol.attachments.find((a) => a.node === nodeId);
      if (here && !here.implicit && here.readOnly !== readOnly) {
        throw alreadyExists(`volume ${volumeId} is already published to ${nodeId} ${here.readOnly ? 'read-only' : 'read-write'}`);
      }
      // A single-node volume held by another node: the core refuses (FailedPrecondition naming
      // the holder, FAILED_PRECONDITION here) unless its takeover rules let this node have it.
      if (!here && d.config.maxVolumesPerNode > 0) {
        const onNode = (await service.list({}, ctx)).filter((v) => v.attachments.some((a) => a.node === nodeId)).length;
        if (onNode >= d.config.maxVolumesPerNode) {
          throw resourceExhausted(`node ${nodeId} already has ${onNode} volumes published (max_volumes_per_node ${d.config.maxVolumesPerNode})`);
        }
      }
      const attached = await service.attach({ ref: volumeId, node: nodeId, readOnly }, ctx);
      const device = attached.attachments.find((a) => a.node === nodeId)?.device ?? null;
      return { publish_context: device ? { device } : {} };
    },

    async ControllerUnpublishVolume(req: pb.ControllerUnpublishVolumeRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const vol = lookupVolume(service, volumeId);
      // A volume or node berth does not know is, by the spec, already unpublished from it.
      if (!vol) return {};
      const nodes = req.node_id ? [req.node_id] : publishedNodeIds(vol);
      for (const node of nodes) {
        if (!vol.attachments.some((a) => a.node === node)) continue;
        await service.detach({ ref: volumeId, node }, ctx);
      }
      return {};
    },

    async ValidateVolumeCapabilities(req: pb.ValidateVolumeCapabilitiesRequest) {
      const volumeId = requireString(req.volume_id, 'volume_id');
      const caps = requireCapabilities(req.volume_capabilities, 'volume_capabilities');
      const vol = requireVolume(service, volumeId);
      const problems = caps.map((c) => capabilityMismatch(vol, c)).filter((m): m is string => m !== null);
      if (problems.length) return { confirmed: null, message: problems.join('; ') };
      return {
        confirmed: {
          volume_context: req.volume_context ?? {},
          volume_capabilities: req.volume_capabilities,
          parameters: req.parameters ?? {},
          mutable_parameters: {},
        },
        message: '',
      };
    },

    async ListVolumes(req: pb.ListVolumesRequest) {
      const max = parseMaxEntries(req.max_entries, 'max_entries');
      const page = paginate(await service.list({}, ctx), req.starting_token ?? '', max, VOLUME_TOKEN);
      return {
        entries: page.entries.map((v) => ({ volume: render(v), status: status(v) })),
        next_token: page.nextToken,
      };
    },

    async ControllerGetVolume(req: pb.ControllerGetVolumeRequest) {
      const vol = requireVolume(service, requireString(req.volume_id, 'volume_id'));
      return { volume: render(vol), status: status(vol) };
    },

    async GetCapacity(req: pb.GetCapacityRequest) {
      if (req.volume_capabilities?.length) requireCapabilities(req.volume_capabilities, 'volume_capabilities');
      const { params } = splitParameters(req.parameters ?? {});
      const opts = parseVolumeOptions(params, 'parameters');
      const caps = await service.capacity(opts.backend, ctx);
      // Another node's segment: of this node's storage only the shared backends reach there.
      const shared = otherNodeOf(req.accessible_topology, id) === null ? null : new Set(service.backends().filter((b) => b.capabilities.scope === 'global').map((b) => b.name));
      const reachable = shared ? caps.filter((c) => shared.has(c.backend)) : caps;
      return { available_capacity: reachable.reduce((sum, c) => sum + c.availableBytes, 0) };
    },

    async ControllerGetCapabilities() {
      const f = featuresOf(service.backends());
      const types = [
        'CREATE_DELETE_VOLUME', 'PUBLISH_UNPUBLISH_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'PUBLISH_READONLY',
        'LIST_VOLUMES_PUBLISHED_NODES', 'VOLUME_CONDITION', 'GET_VOLUME', 'SINGLE_NODE_MULTI_WRITER',
        ...(f.snapshots ? ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS'] : []),
        ...(f.clones ? ['CLONE_VOLUME'] : []),
        ...(f.expansion !== 'none' ? ['EXPAND_VOLUME'] : []),
      ];
      return { capabilities: types.map((type) => ({ rpc: { type } })) };
    },
  };
}

/** CSI parameters minus the Kubernetes metadata keys, which become labels ("csi.storage.k8s.io/pvc/name"). */
function splitParameters(parameters: Record<string, string>): { params: Record<string, string>; labels: Record<string, string> } {
  const params: Record<string, string> = {};
  const labels: Record<string, string> = {};
  // setOwn: a key "__proto__" stays a key, for parseVolumeOptions to refuse by name.
  for (const [k, v] of Object.entries(parameters)) setOwn(k.startsWith(K8S_PARAMETER_PREFIX) ? labels : params, k, v);
  return { params, labels };
}

const SOURCE_PARAMETER = { snapshot: 'fromSnapshot', volume: 'fromVolume' } as const;

/**
 * CreateVolume's one exception to the shared error mapping (errors.ts): the CSI spec answers
 * a content source the plugin cannot use ("source incompatible or not supported") with
 * INVALID_ARGUMENT, where the core's Unsupported is UNIMPLEMENTED everywhere else. Only the
 * errors of the core's source step are re-kinded: they name the source's field
 * (fromSnapshot / fromVolume). NotFound (no such source) stays NOT_FOUND.
 */
function unusableSource(err: unknown, field: string): unknown {
  if (!isBerthError(err) || (err.field !== 'fromSnapshot' && err.field !== 'fromVolume')) return err;
  if (err.kind !== 'Unsupported' && err.kind !== 'InvalidArgument') return err;
  const prefix = `${err.field}: `;
  return invalidArgument(field, err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message);
}

function contentSource(src: pb.VolumeContentSource | null | undefined): BerthCreate['source'] {
  if (!src) return undefined;
  if (src.snapshot) {
    return { kind: 'snapshot', ref: requireString(src.snapshot.snapshot_id, 'volume_content_source.snapshot.snapshot_id') };
  }
  if (src.volume) return { kind: 'volume', ref: requireString(src.volume.volume_id, 'volume_content_source.volume.volume_id') };
  return undefined;
}

/**
 * The filesystem to ask for. `parameters.fs` wins; otherwise the mount capability's
 * fs_type is used when the target backend makes filesystems (dir makes none, so there
 * the CO's default fs_type means nothing). With no backend parameter and several
 * backends, the hint is used only when every backend can make that filesystem.
 */
export function fsTypeFor(
  fromParams: FsType | undefined,
  caps: readonly Capability[],
  backendName: string | undefined,
  backends: readonly BackendInfo[],
  fieldOf: (i: number) => string = (i) => `volume_capabilities[${i}].mount.fs_type`,
): { fsType?: FsType } {
  if (fromParams) return { fsType: fromParams };
  const i = caps.findIndex((c) => c.accessType === 'mount' && c.fsType);
  if (i < 0) return {};
  const fs = caps[i]!.fsType;
  const targets = backendName
    ? backends.filter((b) => b.name === backendName)
    : backends.length === 1 ? backends : backends.every((b) => b.capabilities.fsTypes.length > 0) ? backends : [];
  if (targets.length === 0 || targets.some((b) => b.capabilities.fsTypes.length === 0)) return {};
  const bad = targets.find((b) => !(b.capabilities.fsTypes as readonly string[]).includes(fs));
  if (bad) {
    throw invalidArgument(fieldOf(i), `backend "${bad.name}" cannot make "${fs}" (it makes ${bad.capabilities.fsTypes.join(', ')})`);
  }
  return { fsType: fs as FsType };
}
