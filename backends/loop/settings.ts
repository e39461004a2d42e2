/**
 * The loop driver's instance settings and per-volume options, validated once.
 * Settings errors name "backends.<instance>.<key>", option errors "opts.<key>".
 */
import type { BackendContext, CreateSpec } from '../../core/backend.js';
import { FS_TYPES, type FsType } from '../../core/types.js';
import { invalidArgument, outOfRange } from '../../core/errors.js';
import { formatSize } from '../../core/spec.js';
import { didYouMean } from '../../core/suggest.js';
import { FS_MIN_BYTES } from '../../core/os/fs.js';
import { checkKnownKeys, choiceSetting, pathSetting, settingField, sharedSetting, sizeSetting } from '../settings.js';

export interface LoopSettings {
  /** Directory holding the sparse images <root>/<id>.img. Default <stateRoot>/backends/<instance>. */
  readonly root: string;
  /** Size of volumes created without one. */
  readonly defaultSize: number;
  /** Filesystem of volumes created without one. */
  readonly defaultFs: FsType;
  /** The root is reachable at the same path from every node (../settings.ts sharedSetting). */
  readonly shared: boolean;
}

export const DEFAULT_SIZE = 1024 ** 3;
/** A block volume smaller than this is a mistake rather than a request (1 MiB). */
export const MIN_BLOCK_BYTES = 1024 ** 2;

/**
 * The largest volume the driver makes: its image is whole 512-byte sectors (a loop device
 * sees nothing else), and that count of bytes must still be a number JS holds exactly.
 * The filesystem holding the images may allow less (ext4 with 4 KiB blocks: 16 TiB per
 * file); the kernel says so when the image is sized (EFBIG), and that is OutOfRange too.
 */
export const MAX_LOOP_BYTES = Math.floor(Number.MAX_SAFE_INTEGER / 512) * 512;

/** OutOfRange for a size past MAX_LOOP_BYTES, naming `size`. */
export function checkLoopMax(sizeBytes: number): void {
  if (sizeBytes > MAX_LOOP_BYTES) {
    throw outOfRange('size', `${sizeBytes} bytes is more than a loop volume can be (at most ${MAX_LOOP_BYTES} bytes)`);
  }
}

export function parseLoopSettings(ctx: Pick<BackendContext, 'name' | 'settings' | 'stateRoot'>): LoopSettings {
  checkKnownKeys(ctx.name, ctx.settings, ['root', 'defaultSize', 'defaultFs', 'shared']);
  const defaultFs = choiceSetting(ctx.name, ctx.settings, 'defaultFs', FS_TYPES, 'ext4');
  const defaultSize = sizeSetting(ctx.name, ctx.settings, 'defaultSize', DEFAULT_SIZE);
  if (defaultSize < FS_MIN_BYTES[defaultFs]) {
    throw invalidArgument(settingField(ctx.name, 'defaultSize'), `${formatSize(defaultSize)} is below the ${defaultFs} minimum of ${formatSize(FS_MIN_BYTES[defaultFs])}`);
  }
  return {
    root: pathSetting(ctx.name, ctx.settings, 'root', `${ctx.stateRoot}/backends/${ctx.name}`),
    shared: sharedSetting(ctx.name, ctx.settings),
    defaultSize,
    defaultFs,
  };
}

/**
 * Per-volume options the loop driver accepts (kept deliberately small):
 * - discard=true|false (default false): mount with `discard`, so deleting files punches
 *   holes in the sparse image and the host gets the space back, at some write cost.
 */
export const LOOP_OPTIONS = ['discard'] as const;

export function validateLoopCreate(settings: LoopSettings, spec: CreateSpec): CreateSpec {
  const options: Record<string, string> = {};
  for (const [key, value] of Object.entries(spec.options)) {
    if (key !== 'discard') throw invalidArgument(`opts.${key}`, `unknown loop option${didYouMean(key, LOOP_OPTIONS)} (known: ${LOOP_OPTIONS.join(', ')})`);
    if (value !== 'true' && value !== 'false') throw invalidArgument('opts.discard', `must be true or false, got ${JSON.stringify(value)}`);
    options[key] = value;
  }
  const sizeBytes = spec.sizeBytes > 0 ? spec.sizeBytes : settings.defaultSize;
  checkLoopMax(sizeBytes);
  if (spec.volumeMode === 'block') {
    if (spec.fsType !== null) throw invalidArgument('fs', 'a block volume has no filesystem: leave fs unset');
    if (sizeBytes < MIN_BLOCK_BYTES) throw outOfRange('size', `a block volume needs at least ${formatSize(MIN_BLOCK_BYTES)}, got ${formatSize(sizeBytes)}`);
    return { sizeBytes, fsType: null, volumeMode: 'block', options };
  }
  const fsType = spec.fsType ?? settings.defaultFs;
  const min = FS_MIN_BYTES[fsType];
  if (sizeBytes < min) {
    throw outOfRange('size', `${fsType} needs at least ${formatSize(min)} (mkfs.${fsType} refuses smaller devices), got ${formatSize(sizeBytes)}`);
  }
  return { sizeBytes, fsType, volumeMode: 'filesystem', options };
}
