/**
 * btrfs commands as data over the one Exec, plus the pure parser for `btrfs qgroup show`
 * and the statfs/stat checks that need no process (filesystem type, subvolume root).
 * Paths are always single argv elements after `--`.
 *
 * Facts these helpers rely on (btrfs-progs 6.x, checked on this machine):
 * - a subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID);
 * - `btrfs quota enable` on a filesystem whose quotas are already on is a no-op;
 * - a snapshot copies its source's qgroup limits, so a writable snapshot that becomes a
 *   volume must get its own limit set explicitly;
 * - `btrfs subvolume delete` of a missing path fails, so deletes check existence first;
 * - `--format json` aborts with `--raw` in 6.2, so qgroup output is parsed as text.
 */
import { stat, statfs } from 'node:fs/promises';
import type { Exec } from '../../core/os/exec.js';

/** statfs f_type of btrfs (BTRFS_SUPER_MAGIC). */
export const BTRFS_SUPER_MAGIC = 0x9123683e;
/** Inode number of every subvolume's root directory. */
const SUBVOLUME_ROOT_INO = 256;

const SUBVOLUME_TIMEOUT_MS = 60_000;
const QUOTA_TIMEOUT_MS = 120_000;
const QUERY_TIMEOUT_MS = 30_000;

/** true when `path` lives on a btrfs filesystem; false for other filesystems and missing paths. */
export async function isBtrfs(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === BTRFS_SUPER_MAGIC;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** true when `path` is the root of a btrfs subvolume (or snapshot); false when missing. */
export async function isSubvolume(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    return st.isDirectory() && st.ino === SUBVOLUME_ROOT_INO && (await isBtrfs(path));
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

export async function subvolumeCreate(exec: Exec, path: string): Promise<void> {
  await exec({ bin: 'btrfs', args: ['subvolume', 'create', '--', path], timeoutMs: SUBVOLUME_TIMEOUT_MS });
}

/**
 * Snapshots subvolume `source` at `target` (instant, copy-on-write). `readOnly` makes a
 * read-only snapshot (berth snapshots); without it the result is a writable subvolume
 * (clones, volumes restored from a snapshot).
 */
export async function subvolumeSnapshot(
  exec: Exec, source: string, target: string, opts: { readOnly: boolean },
): Promise<void> {
  const args = ['subvolume', 'snapshot', ...(opts.readOnly ? ['-r'] : []), '--', source, target];
  await exec({ bin: 'btrfs', args, timeoutMs: SUBVOLUME_TIMEOUT_MS });
}

/**
 * Deletes a subvolume (read-only snapshots included) and waits for the transaction
 * commit, so a crash right after cannot bring it back. A missing path is success.
 */
export async function subvolumeDelete(exec: Exec, path: string): Promise<void> {
  if (!(await isSubvolume(path))) return;
  await exec({ bin: 'btrfs', args: ['subvolume', 'delete', '--commit-after', '--', path], timeoutMs: SUBVOLUME_TIMEOUT_MS });
}

/** Turns quota accounting on for the filesystem holding `path` (no-op when already on). */
export async function quotaEnable(exec: Exec, path: string): Promise<void> {
  // `quota enable` counts its arguments and refuses `--`; berth paths are absolute, so no leading '-'.
  await exec({ bin: 'btrfs', args: ['quota', 'enable', path], timeoutMs: QUOTA_TIMEOUT_MS });
}

/**
 * Sets the referenced-bytes limit of the subvolume at `path` (its level-0 qgroup);
 * `null` removes the limit. Takes effect at once, also while the subvolume is in use.
 */
export async function qgroupLimit(exec: Exec, path: string, bytes: number | null): Promise<void> {
  const size = bytes === null ? 'none' : String(bytes);
  await exec({ bin: 'btrfs', args: ['qgroup', 'limit', '--', size, path], timeoutMs: QUERY_TIMEOUT_MS });
}

export interface QgroupRow {
  /** "0/256": level 0 qgroups have the id of their subvolume. */
  readonly qgroupId: string;
  readonly referencedBytes: number;
  readonly exclusiveBytes: number;
  /** null = no limit. */
  readonly maxReferencedBytes: number | null;
  readonly maxExclusiveBytes: number | null;
  /** Subvolume path relative to the filesystem root as btrfs prints it, or null when the column is absent. */
  readonly path: string | null;
}

/**
 * The qgroups that apply to the subvolume at `path` itself (not its parents), with
 * byte counts. Accounting is updated at transaction commit: pass `sync` to commit first
 * when the numbers must include the latest writes (costly; not for periodic stats).
 */
export async function qgroupShow(exec: Exec, path: string, opts: { sync?: boolean } = {}): Promise<QgroupRow[]> {
  const args = ['qgroup', 'show', '--raw', '-r', '-e', '-f', ...(opts.sync ? ['--sync'] : []), '--', path];
  const { stdout } = await exec({ bin: 'btrfs', args, timeoutMs: QUERY_TIMEOUT_MS });
  return parseQgroupShow(stdout);
}

/**
 * Pure parser for `btrfs qgroup show --raw -r -e [...]` text: a header line, a dashes
 * line, then one row per qgroup: id, referenced, exclusive, max referenced, max
 * exclusive (bytes or "none") and, on btrfs-progs >= 5.x, the path (which may contain spaces).
 */
export function parseQgroupShow(text: string): QgroupRow[] {
  const rows: QgroupRow[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+\/\d+)\s+(\d+)\s+(\d+)\s+(\d+|none)\s+(\d+|none)(?:\s+(.*?))?\s*$/.exec(line);
    if (!m) continue;
    const [, id, rfer, excl, maxRfer, maxExcl, path] = m as unknown as [string, string, string, string, string, string, string | undefined];
    rows.push({
      qgroupId: id,
      referencedBytes: Number(rfer),
      exclusiveBytes: Number(excl),
      maxReferencedBytes: maxRfer === 'none' ? null : Number(maxRfer),
      maxExclusiveBytes: maxExcl === 'none' ? null : Number(maxExcl),
      path: path === undefined || path === '' ? null : path,
    });
  }
  return rows;
}

/** The level-0 qgroup row (the subvolume's own) among `rows`, or null. */
export function ownQgroup(rows: readonly QgroupRow[]): QgroupRow | null {
  return rows.find((r) => r.qgroupId.startsWith('0/')) ?? null;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
