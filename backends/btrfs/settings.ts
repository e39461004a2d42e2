/**
 * The btrfs driver's instance settings, validated once when the backend is built. Bad
 * or unknown keys throw InvalidArgument naming "backends.<instance>.<key>".
 */
import { invalidArgument } from '../../core/errors.js';
import { checkKnownKeys, pathSetting, settingField, sizeSetting } from '../settings.js';

export interface BtrfsSettings {
  /** A directory on a mounted btrfs filesystem; volumes/ and snapshots/ are made under it. */
  readonly pool: string;
  /** Size of volumes created without one (their qgroup limit). */
  readonly defaultSize: number;
}

export const DEFAULT_SIZE = 1024 ** 3;
/** Smallest qgroup limit berth sets: below this a volume cannot even hold its metadata. */
export const MIN_SIZE = 1024 ** 2;

/**
 * @example parseBtrfsSettings('fast', { driver: 'btrfs', pool: '/srv/pool', defaultSize: '10GiB' })
 */
export function parseBtrfsSettings(instance: string, raw: Readonly<Record<string, unknown>>): BtrfsSettings {
  checkKnownKeys(instance, raw, ['pool', 'defaultSize']);
  // No default pool: berth cannot make a btrfs filesystem appear, the operator names one.
  const pool = pathSetting(instance, raw, 'pool', '');
  if (pool === '') throw invalidArgument(settingField(instance, 'pool'), 'is required: the path of a mounted btrfs filesystem');
  const defaultSize = sizeSetting(instance, raw, 'defaultSize', DEFAULT_SIZE);
  if (defaultSize < MIN_SIZE) throw invalidArgument(settingField(instance, 'defaultSize'), `must be at least ${MIN_SIZE} bytes (1MiB)`);
  return { pool, defaultSize };
}
