/**
 * CSI request field checks. Each throws InvalidArgument (or OutOfRange for sizes a
 * JS number cannot hold) naming the CSI field exactly as the proto spells it, so a
 * CO's error message points at the field it sent wrong. Pure: no service calls.
 */
import { createHash } from 'node:crypto';
import { invalidArgument, outOfRange, validateVolumeName } from '../../core/index.js';
import { CSI_ACCESS_MODES, type CapacityRange, type CsiAccessMode, type Int64, type VolumeCapability } from './proto.js';

/** A required string field: present and not empty. */
export function requireString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(field, 'is required');
  return value;
}

/** A required absolute path (staging / target / volume path). */
export function requirePath(value: unknown, field: string): string {
  const path = requireString(value, field);
  if (!path.startsWith('/')) throw invalidArgument(field, `"${path}" must be an absolute path`);
  if (path.includes('\0')) throw invalidArgument(field, 'must not contain NUL');
  if (path.split('/').includes('..')) throw invalidArgument(field, `"${path}" must not contain ".."`);
  return path;
}

/** A volume capability reduced to what berth acts on. */
export interface Capability {
  readonly accessType: 'mount' | 'block';
  readonly mode: Exclude<CsiAccessMode, 'UNKNOWN'>;
  /** mount.fs_type, '' when the CO left it to the plugin. */
  readonly fsType: string;
  readonly mountFlags: readonly string[];
}

export function requireCapability(cap: VolumeCapability | null | undefined, field: string): Capability {
  if (!cap) throw invalidArgument(field, 'is required');
  const mode = cap.access_mode?.mode;
  if (!cap.access_mode) throw invalidArgument(`${field}.access_mode`, 'is required');
  if (mode === undefined || mode === 'UNKNOWN' || !(CSI_ACCESS_MODES as readonly string[]).includes(mode)) {
    throw invalidArgument(`${field}.access_mode.mode`, `"${String(mode)}" is not a supported access mode`);
  }
  if (cap.access_type === 'block' || cap.block) {
    return { accessType: 'block', mode, fsType: '', mountFlags: [] };
  }
  if (cap.access_type === 'mount' || cap.mount) {
    const fsType = cap.mount?.fs_type ?? '';
    const mountFlags = cap.mount?.mount_flags ?? [];
    return { accessType: 'mount', mode, fsType, mountFlags };
  }
  throw invalidArgument(`${field}.access_type`, 'is required: set block or mount');
}

export function requireCapabilities(caps: readonly VolumeCapability[] | null | undefined, field: string): Capability[] {
  if (!caps || caps.length === 0) throw invalidArgument(field, 'is required: give at least one capability');
  return caps.map((c, i) => requireCapability(c, `${field}[${i}]`));
}

/** int64 as decoded ("123") -> a safe JS number; negative is InvalidArgument, too large OutOfRange. */
export function parseInt64(value: Int64 | null | undefined, field: string): number {
  if (value === null || value === undefined || value === '') return 0;
  let big: bigint;
  try {
    big = BigInt(value);
  } catch {
    throw invalidArgument(field, `"${String(value)}" is not an integer`);
  }
  if (big < 0n) throw invalidArgument(field, 'must not be negative');
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw outOfRange(field, `${big} bytes is more than berth supports`);
  return Number(big);
}

export interface SizeRange {
  /** 0 = not given. */
  readonly required: number;
  /** 0 = not given (no limit). */
  readonly limit: number;
}

export function parseCapacityRange(range: CapacityRange | null | undefined, field: string): SizeRange {
  if (!range) return { required: 0, limit: 0 };
  const required = parseInt64(range.required_bytes, `${field}.required_bytes`);
  const limit = parseInt64(range.limit_bytes, `${field}.limit_bytes`);
  if (limit > 0 && required > limit) {
    throw outOfRange(field, `required_bytes ${required} is more than limit_bytes ${limit}`);
  }
  return { required, limit };
}

/** max_entries: 0 = no limit; negative is InvalidArgument. */
export function parseMaxEntries(value: number | null | undefined, field: string): number {
  const n = value ?? 0;
  if (!Number.isInteger(n) || n < 0) throw invalidArgument(field, 'must not be negative');
  return n;
}

const BERTH_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MAX_NAME = 128;

/**
 * A CSI name (any string the CO picks; Kubernetes sends "pvc-<uuid>") as a berth volume or
 * snapshot name. Valid berth names pass unchanged; anything else maps deterministically
 * (so a repeated CreateVolume finds the same volume) to its allowed characters plus a
 * hash of the original, e.g. "vol+1" -> "vol-1-3f2a9c0d1e".
 */
export function berthName(csiName: unknown, field: string): { name: string; mapped: boolean } {
  const raw = requireString(csiName, field);
  if (BERTH_NAME_RE.test(raw) && Buffer.byteLength(raw) <= MAX_NAME) return { name: raw, mapped: false };
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 10);
  const cleaned = raw.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, MAX_NAME - hash.length - 1);
  return { name: validateVolumeName(cleaned ? `${cleaned}-${hash}` : `csi-${hash}`, field), mapped: true };
}
