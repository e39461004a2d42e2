/**
 * The btrfs driver's instance settings, validated once when the backend is built. Bad
 * or unknown keys throw InvalidArgument naming "backends.<instance>.<key>".
 */
import { isAbsolute, normalize } from 'node:path';
import { invalidArgument } from '../../core/errors.js';
import { parseSize } from '../../core/spec.js';

export interface BtrfsSettings {
  /** A directory on a mounted btrfs filesystem; volumes/ and snapshots/ are made under it. */
  readonly pool: string;
  /** Size of volumes created without one (their qgroup limit). */
  readonly defaultSize: number;
}

export const DEFAULT_SIZE = 1024 ** 3;
/** Smallest qgroup limit berth sets: below this a volume cannot even hold its metadata. */
export const MIN_SIZE = 1024 ** 2;

const KNOWN_KEYS = ['driver', 'pool', 'defaultSize'] as const;

/**
 * @example parseBtrfsSettings('fast', { driver: 'btrfs', pool: '/srv/pool', defaultSize: '10GiB' })
 */
export function parseBtrfsSettings(instance: string, raw: Readonly<Record<string, unknown>>): BtrfsSettings {
  const field = (key: string) => `backends.${instance}.${key}`;
  for (const key of Object.keys(raw)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
      throw invalidArgument(field(key), `unknown btrfs setting (known: ${KNOWN_KEYS.filter((k) => k !== 'driver').join(', ')})`);
    }
  }
  const pool = raw.pool;
  if (typeof pool !== 'string' || pool === '') {
    throw invalidArgument(field('pool'), 'is required: the path of a mounted btrfs filesystem');
  }
  if (!isAbsolute(pool) || pool.includes('\0')) throw invalidArgument(field('pool'), `"${pool}" must be an absolute path`);
  let defaultSize = DEFAULT_SIZE;
  if (raw.defaultSize !== undefined) {
    if (typeof raw.defaultSize !== 'string' && typeof raw.defaultSize !== 'number') {
      throw invalidArgument(field('defaultSize'), 'must be a size such as "1GiB"');
    }
    defaultSize = parseSize(raw.defaultSize, field('defaultSize'));
    if (defaultSize < MIN_SIZE) throw invalidArgument(field('defaultSize'), `must be at least ${MIN_SIZE} bytes (1MiB)`);
  }
  return { pool: normalize(pool).replace(/(.)\/$/, '$1'), defaultSize };
}
