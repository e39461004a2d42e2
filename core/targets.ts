/**
 * Consumer targets: making a path show a volume with a bind mount (a directory for
 * filesystem volumes, a file for block devices), and taking it away again. Every step is
 * idempotent so a retry or reconcile after a crash converges instead of stacking mounts.
 */
import { mkdir, open, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, isAbsolute, normalize } from 'node:path';
import { invalidArgument } from './errors.js';
import type { Exec } from './os/exec.js';
import { bindMount, isMountpoint, mountDepth, unmountBind } from './os/mounts.js';

/** Bind-mount flags a consumer may ask for; anything else is refused naming "mountFlags". */
export const ALLOWED_MOUNT_FLAGS = ['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'noatime', 'relatime', 'nodiratime', 'strictatime'] as const;

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

/** Splits flags into readOnly + extra whitelisted flags; refuses unknown ones. */
export function parseMountFlags(flags: readonly string[] | undefined, field = 'mountFlags'): { readOnly: boolean; extra: string[] } {
  let readOnly = false;
  const extra: string[] = [];
  for (const [i, raw] of (flags ?? []).entries()) {
    // CSI sends flags like "ro,noatime" in one element too.
    for (const f of String(raw).split(',').map((s) => s.trim()).filter(Boolean)) {
      if (!(ALLOWED_MOUNT_FLAGS as readonly string[]).includes(f)) {
        throw invalidArgument(`${field}[${i}]`, `"${f}" is not an allowed mount flag (allowed: ${ALLOWED_MOUNT_FLAGS.join(', ')})`);
      }
      if (f === 'ro') readOnly = true;
      else if (f !== 'rw' && !extra.includes(f)) extra.push(f);
    }
  }
  return { readOnly, extra };
}

async function sameInode(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([stat(a), stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/**
 * Makes `target` show `source` (bind mount), creating the target first: a directory, or an
 * empty file when `file` (block devices). Already showing it (same inode, mounted) -> no-op.
 * A target this call had to create cannot be a mount point, so it skips the mount table read.
 */
export async function bindTarget(
  exec: Exec,
  source: string,
  target: string,
  opts: { readOnly: boolean; file: boolean; extraFlags?: readonly string[] },
): Promise<void> {
  let existed: boolean;
  if (opts.file) {
    await mkdir(dirname(target), { recursive: true });
    const st = await stat(target).catch(() => null);
    if (st?.isDirectory()) throw invalidArgument('target', `"${target}" is a directory; a block volume needs a file target`);
    existed = st !== null;
    // 'a' creates a missing file and never truncates one that appeared since the stat.
    if (!st) await (await open(target, 'a', 0o600)).close();
  } else {
    // The usual case (CSI: the plugin makes the target) is one mkdir; EEXIST -> look at it.
    existed = await mkdir(target).then(
      () => false,
      async (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return mkdir(target, { recursive: true }).then(() => false);
        if (err.code !== 'EEXIST') throw err;
        if (!(await stat(target)).isDirectory()) throw invalidArgument('target', `"${target}" exists and is not a directory`);
        return true;
      },
    );
  }
  if (existed && (await isMountpoint(target)) && (await sameInode(source, target))) return;
  await bindMount(exec, source, target, { readOnly: opts.readOnly, flags: opts.extraFlags });
}

/** True when `target` is a mount point showing `source`. */
export async function targetShows(source: string, target: string): Promise<boolean> {
  return (await isMountpoint(target)) && (await sameInode(source, target));
}

/**
 * Removes the bind mount(s) at `target` and then the target itself if it is an empty
 * directory or an empty file (the consumer's path is not left behind, per CSI
 * NodeUnpublish); anything with content is left alone. Missing target: no-op.
 * One mount table read: a crash between two binds can stack mounts, so every mount
 * stacked at the target is taken down. A target still mounted afterwards (someone else
 * mounted it meanwhile) is not removed: rmdir / unlink of a mount point fail with EBUSY.
 */
export async function unbindTarget(exec: Exec, target: string): Promise<void> {
  const depth = Math.min(await mountDepth(target), 8);
  for (let i = 0; i < depth; i++) await unmountBind(exec, target);
  // rmdir first (the usual case: an empty directory); ENOTDIR -> an empty file (block).
  const code = await rmdir(target).then(() => null, (err: NodeJS.ErrnoException) => err.code ?? 'unknown');
  if (code !== 'ENOTDIR') return; // removed, missing, not empty (kept), or still mounted (EBUSY)
  const st = await stat(target).catch(() => null);
  if (st?.isFile() && st.size === 0) await rm(target, { force: true }).catch(() => undefined);
}
