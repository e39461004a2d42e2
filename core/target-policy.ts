/**
 * Where berth may bind a consumer target, decided from the path alone before any filesystem
 * call: a normalized absolute path, never a system directory or anything under one, never
 * berth's own state root, and always strictly below one of the allowed prefixes
 * (config `targets.allowedPrefixes`). The same rules hold for every frontend (admin
 * `--target`, CSI staging and target paths, FlexVolume dirs) and for reconcile re-binding a
 * target. What the path is on disk (symlinks, type) is checked next, in targets.ts.
 */
import { isAbsolute, normalize } from 'node:path';
import { invalidArgument } from './errors.js';

/** What the target rules need from the config. */
export interface TargetPolicy {
  /** berth's state root: never a target, nor inside one, nor covered by one. */
  readonly stateRoot: string;
  /** A target must be strictly below one of these (normalized absolute directories). */
  readonly allowedPrefixes: readonly string[];
}

/**
 * Directories whose whole tree belongs to the system: neither they nor anything under them
 * is a target or an allowed prefix.
 */
export const SYSTEM_TREES: readonly string[] = [
  '/proc', '/sys', '/dev', '/etc', '/boot', '/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32',
];

/**
 * Directories that are never a target nor an allowed prefix themselves (covering one hides
 * what the system keeps there; a prefix this broad would allow covering its children, e.g.
 * /var/lib/docker under /var/lib). Paths below them are fine where a prefix allows them.
 */
export const SYSTEM_DIRS: readonly string[] = [
  '/', '/run', '/var', '/var/lib', '/var/run', '/var/log', '/var/tmp', '/var/cache', '/root', '/home', '/tmp', '/opt',
  ...SYSTEM_TREES,
];

/** The embedded default for targets.allowedPrefixes: kubelet, Mesos, Nomad, and /mnt and /media for the admin CLI. */
export const DEFAULT_ALLOWED_PREFIXES: readonly string[] = [
  '/var/lib/kubelet', '/var/lib/mesos', '/var/lib/nomad', '/opt/nomad', '/mnt', '/media',
];

/** `path` is `dir` or below it. */
export function isWithin(path: string, dir: string): boolean {
  return path === dir || dir === '/' || path.startsWith(`${dir}/`);
}

/** Checks a target path: absolute, normalized (no '.', '..', '//'), no NUL, at most 4096 bytes. */
export function validateTarget(target: unknown, field = 'target'): string {
  if (typeof target !== 'string' || target.length === 0) throw invalidArgument(field, 'must be a non-empty absolute path');
  if (target.includes('\0')) throw invalidArgument(field, 'must not contain NUL');
  if (!isAbsolute(target)) throw invalidArgument(field, `"${target}" must be an absolute path`);
  if (Buffer.byteLength(target) > 4096) throw invalidArgument(field, 'is longer than 4096 bytes');
  const trimmed = target.length > 1 && target.endsWith('/') ? target.slice(0, -1) : target;
  if (normalize(trimmed) !== trimmed || trimmed.split('/').includes('..')) {
    throw invalidArgument(field, `"${target}" must be a normalized path (no ".", ".." or "//")`);
  }
  if (trimmed === '/') throw invalidArgument(field, 'must not be /');
  return trimmed;
}

/** Why `path` is a system path (a sentence), or null. */
export function systemPathReason(path: string): string | null {
  const tree = SYSTEM_TREES.find((t) => isWithin(path, t));
  if (tree !== undefined) return path === tree ? `"${path}" is a system directory` : `"${path}" is under ${tree}, a system directory`;
  if (SYSTEM_DIRS.includes(path)) return `"${path}" is a system directory`;
  return null;
}

/**
 * The whole path rule for a consumer target; returns the normalized path. Throws
 * InvalidArgument naming `field` (the caller's spelling: "target", "target_path", ...) and
 * the reason. Pure: it decides before anything on disk is looked at or made.
 * @example const target = checkTarget(req.target, { stateRoot: '/var/lib/berth', allowedPrefixes: ['/mnt'] });
 */
export function checkTarget(target: unknown, policy: TargetPolicy, field = 'target'): string {
  const path = validateTarget(target, field);
  const system = systemPathReason(path);
  if (system !== null) throw invalidArgument(field, `${system}; berth never mounts there`);
  if (isWithin(path, policy.stateRoot)) {
    throw invalidArgument(field, `"${path}" is inside berth's state root ${policy.stateRoot}`);
  }
  if (isWithin(policy.stateRoot, path)) {
    throw invalidArgument(field, `"${path}" would cover berth's state root ${policy.stateRoot}`);
  }
  if (!policy.allowedPrefixes.some((p) => path !== p && isWithin(path, p))) {
    const allowed = policy.allowedPrefixes.length ? `below ${policy.allowedPrefixes.join(', ')}` : 'nowhere (the list is empty)';
    throw invalidArgument(field, `"${path}" is not below an allowed target directory: targets.allowedPrefixes (BERTH_TARGETS_ALLOWED_PREFIXES) allows targets ${allowed}`);
  }
  return path;
}

/**
 * Checks one entry of targets.allowedPrefixes (config load); returns it normalized.
 * @example checkAllowedPrefix('/srv/volumes', 'targets.allowedPrefixes[0]', '/var/lib/berth');
 */
export function checkAllowedPrefix(prefix: unknown, field: string, stateRoot: string): string {
  if (typeof prefix === 'string' && prefix !== '' && !isAbsolute(prefix)) {
    throw invalidArgument(field, `"${prefix}" must be an absolute path (relative prefixes are not resolved)`);
  }
  const path = validateTarget(prefix, field);
  const system = systemPathReason(path);
  if (system !== null) throw invalidArgument(field, `${system}; it cannot be an allowed target prefix`);
  if (isWithin(path, stateRoot)) throw invalidArgument(field, `"${path}" is inside berth's state root ${stateRoot}`);
  return path;
}
