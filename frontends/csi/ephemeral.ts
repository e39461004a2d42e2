/**
 * CSI ephemeral inline volumes, the protocol side (the lifecycle rule is the core's:
 * MountRequest.ephemeral, core/ephemeral.ts). kubelet publishes a pod's `csi:` volume with
 * no staging, volume_id "csi-<sha256(pod uid + volume name)>" and a volume_context made of
 * the pod volume's volumeAttributes plus, with the CSIDriver's podInfoOnMount, the pod's
 * identity and `csi.storage.k8s.io/ephemeral: "true"` (csi_mounter.go SetUpAt). The
 * attributes are berth volume options, like StorageClass parameters (size, backend, fs,
 * label.<k>, backend options), and a bad one is INVALID_ARGUMENT naming
 * `volume_context.<attribute>`.
 */
import {
  clip, failedPrecondition, invalidArgument, isEphemeral, optionFieldNames, parseVolumeOptions, renameErrorField, setOwn,
  type BackendInfo, type CreateVolumeRequest, type Volume, type VolumeService,
} from '../../core/index.js';
import { fsTypeFor } from './controller.js';
import type * as pb from './proto.js';
import { berthName, type Capability } from './requests.js';

/** The volume_context key kubelet sets on every publish when the CSIDriver has podInfoOnMount. */
export const EPHEMERAL_CONTEXT_KEY = 'csi.storage.k8s.io/ephemeral';

const K8S_CONTEXT_PREFIX = 'csi.storage.k8s.io/';

/** The pod's identity, kept as labels (never the service account tokens kubelet may add). */
const POD_LABELS = ['csi.storage.k8s.io/pod.name', 'csi.storage.k8s.io/pod.namespace', 'csi.storage.k8s.io/pod.uid'];

/** kubelet's handle for an ephemeral volume (csi_mounter.go makeVolumeHandle). */
const KUBELET_EPHEMERAL_HANDLE = /^csi-[0-9a-f]{64}$/;

export const isEphemeralPublish = (req: pb.NodePublishVolumeRequest): boolean => req.volume_context?.[EPHEMERAL_CONTEXT_KEY] === 'true';

/**
 * Where the volume a CSI volume_id means lives: a berth volume id, else an ephemeral
 * volume's name (its volume_id is kubelet's handle, mapped like any CSI name).
 */
export function findNodeVolume(service: VolumeService, volumeId: string): Volume | null {
  const byId = service.find(volumeId);
  if (byId && byId.id === volumeId) return byId;
  const byName = service.find(berthName(volumeId, 'volume_id').name);
  return byName && isEphemeral(byName) ? byName : null;
}

/**
 * NodeUnpublish of a volume that does not exist (any more): an ephemeral volume goes with its
 * unpublish, and kubelet repeats an unpublish whose answer it lost, forever if it keeps
 * failing. So kubelet's ephemeral handle is answered as done; any other id is NOT_FOUND.
 */
export const isGoneEphemeral = (volumeId: string): boolean => KUBELET_EPHEMERAL_HANDLE.test(volumeId);

/** What an ephemeral publish asks the core to make: the volume's name and its create spec. */
export interface EphemeralRequest {
  readonly name: string;
  readonly create: Omit<CreateVolumeRequest, 'name'>;
  /** Attribute names for the core's create fields, for renaming its errors. */
  readonly fields: Readonly<Record<string, string>>;
}

/** Checks an ephemeral NodePublish and turns its attributes into a create spec. */
export function ephemeralRequest(
  req: pb.NodePublishVolumeRequest,
  cap: Capability,
  backends: readonly BackendInfo[],
  enabled: boolean,
): EphemeralRequest {
  if (!enabled) {
    throw failedPrecondition(`ephemeral inline volumes are turned off on this node (csi.ephemeral: false in berth's config); ${EPHEMERAL_CONTEXT_KEY} was "true"`);
  }
  if (req.staging_target_path) {
    throw invalidArgument('staging_target_path', `an ephemeral inline volume (${EPHEMERAL_CONTEXT_KEY}: "true") is not staged; got "${clip(req.staging_target_path)}"`);
  }
  if (cap.accessType === 'block') throw invalidArgument('volume_capability', 'an ephemeral inline volume is a filesystem: block access is not supported');
  const { name, mapped } = berthName(req.volume_id, 'volume_id');
  const context = req.volume_context ?? {};
  // setOwn: a key "__proto__" stays a key, for parseVolumeOptions to refuse by name.
  const attributes: Record<string, string> = {};
  for (const [k, v] of Object.entries(context)) if (!k.startsWith(K8S_CONTEXT_PREFIX)) setOwn(attributes, k, v);
  const opts = parseVolumeOptions(attributes, 'volume_context');
  if (opts.volumeMode === 'block') throw invalidArgument('volume_context.mode', 'an ephemeral inline volume is a filesystem');
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.labels ?? {})) setOwn(labels, k, v);
  for (const k of POD_LABELS) if (Object.hasOwn(context, k) && context[k]) labels[k] = context[k]!;
  if (mapped) labels['csi.berth.dev/name'] = req.volume_id;
  const create: Omit<CreateVolumeRequest, 'name'> = {
    ...opts,
    volumeMode: 'filesystem',
    // One pod's scratch space: nothing else may mount it.
    accessMode: opts.accessMode ?? 'ReadWriteOncePod',
    ...fsTypeFor(opts.fsType, [cap], opts.backend, backends, () => 'volume_capability.mount.fs_type'),
    ...(Object.keys(labels).length ? { labels } : {}),
  };
  return { name, create, fields: optionFieldNames(attributes, 'volume_context') };
}

/** A core error about the create spec, named as the pod volume's attribute that set it. */
export function asAttributeError(err: unknown, fields: Readonly<Record<string, string>>): unknown {
  const renamed = renameErrorField(err, fields);
  if (renamed !== err) return renamed;
  const field = (err as { field?: unknown }).field;
  if (typeof field !== 'string') return err;
  // Backend options: the backend names them "opts.<key>"; labels came from "label.<key>".
  if (field.startsWith('opts.')) return renameErrorField(err, { [field]: `volume_context.${field.slice('opts.'.length)}` });
  if (field.startsWith('labels.')) return renameErrorField(err, { [field]: `volume_context.label.${field.slice('labels.'.length)}` });
  return err;
}
