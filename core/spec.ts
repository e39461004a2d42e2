/**
 * User input -> typed request fields, shared by every frontend: volume names, sizes with
 * units, and the flat option maps Docker (`-o k=v`), dvdcli (`--volumeopts`), FlexVolume
 * and CSI parameters send. Everything here is pure and throws InvalidArgument naming the
 * field, so a frontend never has to invent its own parsing (convention 6).
 */
import { invalidArgument, outOfRange } from './errors.js';
import { clip } from './user-input.js';
import type { CreateVolumeRequest } from './service.js';
import { ACCESS_MODES, FS_TYPES, VOLUME_MODES, type AccessMode, type FsType, type VolumeMode } from './types.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const MAX_NAME_BYTES = 128;

/**
 * Checks a volume or snapshot name: [A-Za-z0-9][A-Za-z0-9_.-]*, 1..128 bytes. The pattern
 * alone already excludes '/', '..' as a whole name (first char), NUL and whitespace.
 * @example validateVolumeName('pgdata') // 'pgdata'
 */
export function validateVolumeName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string') throw invalidArgument(field, 'must be a string');
  if (name.length === 0) throw invalidArgument(field, 'must not be empty');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
    throw invalidArgument(field, `must be at most ${MAX_NAME_BYTES} bytes`);
  }
  if (!NAME_RE.test(name)) {
    throw invalidArgument(field, `"${clip(name)}" is not a valid name: use letters, digits, '_', '.', '-' and start with a letter or digit`);
  }
  return name;
}

/** Multipliers by unit, case-insensitive. Binary units are powers of 1024, the rest of 1000. */
const UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40,
};

const SIZE_RE = /^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$/;

/**
 * Parses "512MiB", "1GiB", "10G" (10*10^9), "64M", "1.5GiB", "1048576" or a number into bytes.
 * Refuses negatives, fractional byte counts and unknown units (InvalidArgument), and sizes
 * beyond 2^53-1 bytes, the largest a JS number holds exactly (OutOfRange: a well-formed size
 * outside what berth can handle, like a backend's own maximum).
 * @example parseSize('1GiB', 'size') // 1073741824
 */
export function parseSize(input: string | number, field: string): number {
  if (typeof input === 'number') {
    if (Number.isNaN(input)) throw invalidArgument(field, 'must be a number of bytes');
    if (input < 0) throw invalidArgument(field, 'must not be negative');
    if (input === Infinity || input > Number.MAX_SAFE_INTEGER) throw tooLarge(field, String(input));
    if (!Number.isInteger(input)) throw invalidArgument(field, 'must be a whole number of bytes');
    return input;
  }
  if (typeof input !== 'string') throw invalidArgument(field, 'must be a size such as "512MiB", "10G" or a number of bytes');
  const text = input.trim();
  if (text.startsWith('-')) throw invalidArgument(field, `"${clip(input)}" must not be negative`);
  const m = SIZE_RE.exec(text);
  if (!m) throw invalidArgument(field, `"${clip(input)}" is not a size: use e.g. 512MiB, 1GiB, 10G or plain bytes`);
  const [, digits, unitRaw] = m as unknown as [string, string, string];
  const mult = Object.hasOwn(UNITS, unitRaw.toLowerCase()) ? UNITS[unitRaw.toLowerCase()] : undefined;
  if (mult === undefined) {
    throw invalidArgument(field, `unknown unit "${clip(unitRaw)}": use B, K/KB, M/MB, G/GB, T/TB (10^3) or KiB, MiB, GiB, TiB (2^10)`);
  }
  // Leading zeros of the whole part and trailing zeros of the fraction change nothing; without
  // them a digit count bounds the value, so no arithmetic is ever done on a megabyte of digits.
  const [wholeRaw, fracRaw = ''] = digits.split('.') as [string, string?];
  const whole = wholeRaw.replace(/^0+(?=\d)/, '');
  const frac = fracRaw.replace(/0+$/, '');
  if (whole.length > MAX_SAFE_DIGITS) throw tooLarge(field, input);
  // A whole number of bytes has at most 40 fraction digits (2^-40 has 40: TiB is the finest unit).
  if (frac.length > 40) throw invalidArgument(field, `"${clip(input)}" is not a whole number of bytes`);
  // Exact arithmetic on the decimal digits so "1.5GiB" is exact and "0.5" bytes is caught.
  const scale = 10n ** BigInt(frac.length);
  const total = (BigInt(whole) * scale + BigInt(frac || '0')) * BigInt(mult);
  if (total % scale !== 0n) throw invalidArgument(field, `"${clip(input)}" is not a whole number of bytes`);
  const big = total / scale;
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw tooLarge(field, input);
  return Number(big);
}

/** Digits of Number.MAX_SAFE_INTEGER (9007199254740991). */
const MAX_SAFE_DIGITS = 16;

const tooLarge = (field: string, input: string) =>
  outOfRange(field, `"${clip(input)}" is too large: berth handles sizes up to ${Number.MAX_SAFE_INTEGER} bytes (just under 8 PiB)`);

/**
 * Renders bytes with the largest binary unit that divides it exactly (so the text parses
 * back to the same number), else plain bytes.
 * @example formatSize(1073741824) // '1GiB'
 */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return `${bytes}`;
  for (const [unit, mult] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return `${bytes}B`;
}

const LABEL_KEY_RE = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,252}[A-Za-z0-9])?$/;
const OPTION_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Checks a label key ([A-Za-z0-9] start/end, `_ . / -` inside, at most 254 chars). */
export function validateLabelKey(key: string, field: string): string {
  if (!LABEL_KEY_RE.test(key)) throw invalidArgument(field, `"${clip(key)}" is not a valid label key`);
  return key;
}

/** Checks a label / option value: a string (numbers and booleans are converted), no NUL, at most 4096 bytes. */
export function validateStringValue(value: unknown, field: string): string {
  let s: string;
  if (typeof value === 'string') s = value;
  else if (typeof value === 'number' || typeof value === 'boolean') s = String(value);
  else throw invalidArgument(field, 'must be a string');
  if (s.includes('\0')) throw invalidArgument(field, 'must not contain NUL');
  if (Buffer.byteLength(s, 'utf8') > 4096) throw invalidArgument(field, 'must be at most 4096 bytes');
  return s;
}

/** Validates a labels object ({k: v}) naming "<field>.<k>" on error. */
export function validateLabels(labels: unknown, field = 'labels'): Record<string, string> {
  if (labels === undefined || labels === null) return {};
  if (typeof labels !== 'object' || Array.isArray(labels)) throw invalidArgument(field, 'must be an object of string values');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    validateLabelKey(k, `${field}.${k}`);
    out[k] = validateStringValue(v, `${field}.${k}`);
  }
  return out;
}

/** Validates a backend options object ({k: v}) naming "<field>.<k>" on error. */
export function validateOptions(options: unknown, field = 'options'): Record<string, string> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) throw invalidArgument(field, 'must be an object of string values');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(options)) {
    if (!OPTION_KEY_RE.test(k)) throw invalidArgument(`${field}.${k}`, 'is not a valid option name');
    out[k] = validateStringValue(v, `${field}.${k}`);
  }
  return out;
}

export function parseFsType(value: unknown, field: string): FsType {
  if (typeof value === 'string' && (FS_TYPES as readonly string[]).includes(value)) return value as FsType;
  throw invalidArgument(field, `"${clip(String(value))}" is not a supported filesystem: use one of ${FS_TYPES.join(', ')}`);
}

export function parseVolumeMode(value: unknown, field: string): VolumeMode {
  if (typeof value === 'string' && (VOLUME_MODES as readonly string[]).includes(value)) return value as VolumeMode;
  throw invalidArgument(field, `"${clip(String(value))}" is not a volume mode: use one of ${VOLUME_MODES.join(', ')}`);
}

export function parseAccessMode(value: unknown, field: string): AccessMode {
  if (typeof value === 'string' && (ACCESS_MODES as readonly string[]).includes(value)) return value as AccessMode;
  throw invalidArgument(field, `"${clip(String(value))}" is not an access mode: use one of ${ACCESS_MODES.join(', ')}`);
}

type MutableCreate = { -readonly [K in keyof Omit<CreateVolumeRequest, 'name'>]: Omit<CreateVolumeRequest, 'name'>[K] };

/**
 * Turns a flat option map (Docker `-o`, dvdcli `--volumeopts`, CSI parameters, FlexVolume
 * options) into create-request fields. Known keys: size, fs|fsType, backend, mode,
 * accessMode, fromSnapshot, fromVolume, label.<k>. Every other key goes to `options`
 * unchanged; the backend validates those and refuses unknown ones naming "opts.<key>".
 * @example parseVolumeOptions({ size: '1GiB', fs: 'xfs', 'label.team': 'db' }, 'opts')
 */
export function parseVolumeOptions(
  opts: Record<string, unknown> | null | undefined,
  field = 'opts',
): Omit<CreateVolumeRequest, 'name'> {
  const out: MutableCreate = {};
  if (opts === null || opts === undefined) return out;
  if (typeof opts !== 'object' || Array.isArray(opts)) throw invalidArgument(field, 'must be an object of key=value options');
  const labels: Record<string, string> = {};
  const options: Record<string, string> = {};
  let source: { kind: 'snapshot' | 'volume'; ref: string } | undefined;
  for (const [key, raw] of Object.entries(opts)) {
    const f = `${field}.${key}`;
    if (raw === undefined) continue;
    switch (key) {
      case 'size':
        if (typeof raw !== 'string' && typeof raw !== 'number') throw invalidArgument(f, 'must be a size such as "1GiB"');
        out.sizeBytes = parseSize(raw, f);
        break;
      case 'fs':
      case 'fsType':
      case 'fstype':
        if (out.fsType !== undefined) throw invalidArgument(f, 'filesystem given twice (fs and fsType)');
        out.fsType = parseFsType(raw, f);
        break;
      case 'backend':
        out.backend = validateVolumeName(validateStringValue(raw, f), f);
        break;
      case 'mode':
      case 'volumeMode':
        out.volumeMode = parseVolumeMode(raw, f);
        break;
      case 'accessMode':
        out.accessMode = parseAccessMode(raw, f);
        break;
      case 'preempt':
        out.preempt = parseBool(raw, f);
        break;
      case 'fromSnapshot':
      case 'fromVolume': {
        if (source) throw invalidArgument(f, 'give only one of fromSnapshot and fromVolume');
        const ref = validateStringValue(raw, f);
        if (!ref) throw invalidArgument(f, 'must not be empty');
        source = { kind: key === 'fromSnapshot' ? 'snapshot' : 'volume', ref };
        break;
      }
      default:
        if (key.startsWith('label.')) {
          const k = key.slice('label.'.length);
          validateLabelKey(k, f);
          labels[k] = validateStringValue(raw, f);
        } else {
          if (!OPTION_KEY_RE.test(key)) throw invalidArgument(f, 'is not a valid option name');
          options[key] = validateStringValue(raw, f);
        }
    }
  }
  if (Object.keys(labels).length) out.labels = labels;
  if (Object.keys(options).length) out.options = options;
  if (source) out.source = source;
  return out;
}

/** "true" / "false" (also 1/0, yes/no, on/off), or a boolean. */
export function parseBool(value: unknown, field: string): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    if (/^(true|1|yes|on)$/i.test(value)) return true;
    if (/^(false|0|no|off)$/i.test(value)) return false;
  }
  throw invalidArgument(field, `"${clip(String(value))}" must be true or false`);
}

/** The core's names of the create fields its errors name ("opts.<key>" for backend options). */
type CreateFieldName = 'size' | 'fs' | 'backend' | 'mode' | 'accessMode' | 'fromSnapshot' | 'fromVolume' | 'preempt';

/** Option keys parseVolumeOptions turns into typed fields, by the core's name of that field. */
const OPTION_FIELDS: Readonly<Record<string, CreateFieldName>> = {
  size: 'size', fs: 'fs', fsType: 'fs', fstype: 'fs', backend: 'backend', mode: 'mode', volumeMode: 'mode',
  accessMode: 'accessMode', fromSnapshot: 'fromSnapshot', fromVolume: 'fromVolume', preempt: 'preempt',
};

/**
 * For a flat option map, each typed create field named after the key the user typed, with
 * the same prefix parseVolumeOptions uses: a frontend passes it to renameErrorField so an
 * error the core raises later (an unknown backend, a size below the backend's minimum)
 * reads like the parser's own ("opts.backend"). Options that are not typed fields are named
 * by the backend.
 * @example optionFieldNames({ fsType: 'xfs', backend: 'loop' }) // { fs: 'opts.fsType', backend: 'opts.backend' }
 */
export function optionFieldNames(
  opts: Record<string, unknown> | null | undefined,
  field = 'opts',
): Partial<Record<CreateFieldName, string>> {
  const out: Partial<Record<CreateFieldName, string>> = {};
  if (opts === null || typeof opts !== 'object') return out;
  for (const [key, raw] of Object.entries(opts)) {
    const name = Object.hasOwn(OPTION_FIELDS, key) ? OPTION_FIELDS[key] : undefined;
    if (name !== undefined && raw !== undefined) out[name] = `${field}.${key}`;
  }
  return out;
}
