/**
 * The option JSON kubelet passes to FlexVolume calls (flexvolume.md §4): a flat
 * map[string]string of `kubernetes.io/*` keys kubelet injects plus the PV's / pod volume's
 * `flexVolume.options`. This file splits it into which berth volume is meant, how the
 * consumer mounts it, and the create request for when the volume does not exist yet.
 */
import { invalidArgument } from '../../core/errors.js';
import { setOwn } from '../../core/user-input.js';
import type { CreateVolumeBody } from '../admin/client.js';

/** Body of POST /v1/volumes as built here; the daemon validates every value (mode, accessMode, ...). */
interface CreateBody {
  name: string;
  size?: string;
  fs?: string;
  backend?: string;
  mode?: string;
  accessMode?: string;
  fromSnapshot?: string;
  fromVolume?: string;
  labels?: Record<string, string>;
  options?: Record<string, string>;
}

export interface PodInfo {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly serviceAccount: string;
}

export interface FlexOptions {
  /** The berth volume (name or id): option `volumeName`/`volumeID`, else the PV / pod volume name. */
  readonly ref: string;
  /** `kubernetes.io/pvOrVolumeName`: the PV name, or the pod's volume name for inline volumes. */
  readonly pvName: string | null;
  /** `kubernetes.io/fsType`; null when unset ("" from kubelet). */
  readonly fsType: string | null;
  /** `kubernetes.io/readwrite` == "ro". */
  readonly readOnly: boolean;
  /** Only on `mount`. */
  readonly pod: PodInfo | null;
  /** `kubernetes.io/mounterArgs.FsGroup` (or the pre-1.15 `kubernetes.io/fsGroup`); only on `mount`. */
  readonly fsGroup: number | null;
  /** Whether the driver may create the volume when it is missing (option `create`, default true). */
  readonly createIfMissing: boolean;
  /** The create request used when the volume is missing. */
  readonly create: CreateVolumeBody;
}

/** Label put on volumes this driver creates, so `detach <pv name>` finds them under another name. */
export const PV_LABEL = 'flex-pv';

const K8S_PREFIX = 'kubernetes.io/';
/** Option keys that pick the volume or steer the driver; never sent to the backend. */
const REF_KEYS = ['volumeName', 'volumeID'] as const;
/** Keys that become top-level fields of the create request; everything else is a backend option. */
const CREATE_FIELDS = ['size', 'backend', 'mode', 'accessMode', 'fromSnapshot', 'fromVolume'] as const;

/**
 * Kubernetes quantities ("10Gi", "500Mi") next to berth sizes ("10GiB", "512MiB"): add the
 * missing "B" so a PV's size option can be written the Kubernetes way.
 */
export function normalizeSize(size: string): string {
  return /^\s*\d+(\.\d+)?\s*[KMGTPE]i\s*$/.test(size) ? `${size.trim()}B` : size;
}

function parseJsonObject(raw: string, field: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw invalidArgument(field, `not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalidArgument(field, 'expected a JSON object of string options');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    // kubelet only sends strings; hand-written calls may send numbers or booleans.
    // setOwn: a key "__proto__" stays a key (an option the daemon refuses by name).
    if (typeof v === 'string') setOwn(out, k, v);
    else if (typeof v === 'number' || typeof v === 'boolean') setOwn(out, k, String(v));
    else throw invalidArgument(`${field}.${k}`, 'expected a string value');
  }
  return out;
}

function parseBool(value: string, field: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw invalidArgument(field, `expected true or false, got ${JSON.stringify(value)}`);
}

/** Parses one option JSON argv element; `field` names it in errors (e.g. "mount options JSON"). */
export function parseFlexOptions(raw: string, field = 'options'): FlexOptions {
  const opts = parseJsonObject(raw, field);
  const pvName = opts[`${K8S_PREFIX}pvOrVolumeName`] || null;
  const fsType = opts[`${K8S_PREFIX}fsType`] || null;
  const rw = opts[`${K8S_PREFIX}readwrite`];
  if (rw !== undefined && rw !== 'ro' && rw !== 'rw') {
    throw invalidArgument(`${field}.${K8S_PREFIX}readwrite`, `expected "ro" or "rw", got ${JSON.stringify(rw)}`);
  }

  const refs = REF_KEYS.map((k) => opts[k]).filter((v): v is string => !!v);
  if (refs.length === 2 && refs[0] !== refs[1]) {
    throw invalidArgument(`${field}.volumeName`, `volumeName ${JSON.stringify(refs[0])} and volumeID ${JSON.stringify(refs[1])} name different volumes`);
  }
  const ref = refs[0] ?? pvName;
  if (!ref) {
    throw invalidArgument(`${field}.volumeName`, `no volume given: set the volumeName option or ${K8S_PREFIX}pvOrVolumeName`);
  }

  const podName = opts[`${K8S_PREFIX}pod.name`];
  const pod: PodInfo | null =
    podName === undefined
      ? null
      : {
          name: podName,
          namespace: opts[`${K8S_PREFIX}pod.namespace`] ?? '',
          uid: opts[`${K8S_PREFIX}pod.uid`] ?? opts[`${K8S_PREFIX}pod.UID`] ?? '',
          serviceAccount: opts[`${K8S_PREFIX}serviceAccount.name`] ?? '',
        };
  const fsGroupRaw = opts[`${K8S_PREFIX}mounterArgs.FsGroup`] ?? opts[`${K8S_PREFIX}fsGroup`];
  let fsGroup: number | null = null;
  if (fsGroupRaw !== undefined && fsGroupRaw !== '') {
    if (!/^\d+$/.test(fsGroupRaw)) throw invalidArgument(`${field}.${K8S_PREFIX}mounterArgs.FsGroup`, `expected a group id, got ${JSON.stringify(fsGroupRaw)}`);
    fsGroup = Number(fsGroupRaw);
  }

  const create: CreateBody = { name: ref };
  const backendOptions: Record<string, string> = {};
  const labels: Record<string, string> = {};
  let createIfMissing = true;
  let userFs: string | null = null;
  for (const [key, value] of Object.entries(opts)) {
    // kubelet's own keys, pod identity and base64 secrets never reach the backend.
    if (key.startsWith(K8S_PREFIX) || (REF_KEYS as readonly string[]).includes(key)) continue;
    if (key === 'create') createIfMissing = parseBool(value, `${field}.create`);
    else if (key === 'fs' || key === 'fsType') {
      if (userFs !== null && userFs !== value) throw invalidArgument(`${field}.${key}`, `fs ${JSON.stringify(userFs)} and fsType ${JSON.stringify(value)} disagree`);
      userFs = value;
    } else if (key.startsWith('label.')) setOwn(labels, key.slice('label.'.length), value);
    else if ((CREATE_FIELDS as readonly string[]).includes(key)) {
      (create as unknown as Record<string, string>)[key] = key === 'size' ? normalizeSize(value) : value;
    } else setOwn(backendOptions, key, value);
  }
  if (userFs !== null && fsType !== null && userFs !== fsType) {
    throw invalidArgument(`${field}.fs`, `option fs=${userFs} disagrees with the volume's fsType ${fsType}`);
  }
  const fs = userFs ?? fsType;
  if (fs !== null) create.fs = fs;
  if (pvName !== null && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(pvName)) labels[PV_LABEL] = pvName;
  if (Object.keys(labels).length > 0) create.labels = labels;
  if (Object.keys(backendOptions).length > 0) create.options = backendOptions;

  return { ref, pvName, fsType: fs, readOnly: rw === 'ro', pod, fsGroup, createIfMissing, create: create as CreateVolumeBody };
}
