/**
 * Mount table reads (straight from /proc/self/mountinfo, no process) and the mount /
 * umount commands as data over the one Exec. Paths are single argv elements.
 */
import { readFile } from 'node:fs/promises';
import { inUse, internal } from '../errors.js';
import { CommandError, type Exec } from './exec.js';

export interface MountEntry {
  readonly id: number;
  readonly parentId: number;
  /** Root of the mount within its filesystem ("/" or a subdirectory for bind mounts). */
  readonly root: string;
  readonly target: string;
  readonly options: readonly string[];
  readonly fsType: string;
  /** Mount source (device path for block filesystems). */
  readonly source: string;
  readonly superOptions: readonly string[];
}

const MOUNT_TIMEOUT_MS = 60_000;
/** More stacked mounts than this at one path is a bug, not a state to converge from. */
const MAX_STACKED = 8;

/** Undoes the octal escapes the kernel uses for space, tab, newline and backslash. */
export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Pure parser for /proc/self/mountinfo text. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    out.push({
      id: Number(left[0]),
      parentId: Number(left[1]),
      root: unescapeMountPath(left[3] ?? ''),
      target: unescapeMountPath(left[4] ?? ''),
      options: (left[5] ?? '').split(','),
      fsType: right[0] ?? '',
      source: unescapeMountPath(right[1] ?? ''),
      superOptions: (right[2] ?? '').split(','),
    });
  }
  return out;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The topmost mount at exactly `target`, or null. */
export async function findMount(target: string): Promise<MountEntry | null> {
  const all = await readMountInfo();
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.target === target) return all[i]!;
  return null;
}

export async function isMountpoint(target: string): Promise<boolean> {
  return (await findMount(target)) !== null;
}

export interface MountOptions {
  readonly fsType?: string;
  readonly options?: readonly string[];
}

export async function mount(exec: Exec, source: string, target: string, opts: MountOptions = {}): Promise<void> {
  const args: string[] = [];
  if (opts.fsType) args.push('-t', opts.fsType);
  if (opts.options && opts.options.length) args.push('-o', opts.options.join(','));
  args.push('--', source, target);
  await exec({ bin: 'mount', args, timeoutMs: MOUNT_TIMEOUT_MS });
}

/**
 * mount(8) / umount(8) flags for berth's own bind mounts:
 * -n: no /run/mount/utab bookkeeping (berth keeps its own records; /etc/mtab is /proc/mounts);
 * -c: no canonicalization (the core passes validated absolute paths; skips a realpath walk);
 * -i: no /sbin/mount.<type> or umount.<type> helper lookup (never wanted for a bind mount).
 */
const BIND_FLAGS = ['-n', '-c', '-i'] as const;

/**
 * Bind-mounts `source` onto `target` (a directory, or a file for block devices) with one
 * mount(8): since util-linux 2.27, `--bind -o ro,nosuid,...` makes the bind and the
 * read-only / flag remount itself, so read-only or flagged binds cost no second process.
 */
export async function bindMount(
  exec: Exec,
  source: string,
  target: string,
  opts: { readOnly?: boolean; flags?: readonly string[] } = {},
): Promise<void> {
  const options = [...(opts.readOnly ? ['ro'] : []), ...(opts.flags ?? [])];
  const args = [...BIND_FLAGS, '--bind', ...(options.length ? ['-o', options.join(',')] : []), '--', source, target];
  await exec({ bin: 'mount', args, timeoutMs: MOUNT_TIMEOUT_MS });
}

/** Unmounts the topmost mount at `target` without looking first (the caller knows it is mounted). */
export async function unmountBind(exec: Exec, target: string): Promise<void> {
  try {
    await exec({ bin: 'umount', args: [...BIND_FLAGS, '--', target], timeoutMs: MOUNT_TIMEOUT_MS });
  } catch (err) {
    // A consumer's process still in the target is the caller's problem to resolve, not a bug.
    if (err instanceof CommandError && /busy/i.test(err.stderrTail)) throw inUse(`${target} is busy: a process still uses it`);
    throw err;
  }
}

/** How many mounts are stacked at exactly `target` (0: not a mount point). One mountinfo read. */
export async function mountDepth(target: string): Promise<number> {
  let n = 0;
  for (const e of await readMountInfo()) if (e.target === target) n++;
  return n;
}

/** Unmounts `target`; not mounted is success (idempotent). */
export async function unmount(exec: Exec, target: string): Promise<void> {
  if (!(await isMountpoint(target))) return;
  await exec({ bin: 'umount', args: ['--', target], timeoutMs: MOUNT_TIMEOUT_MS });
}

/**
 * Unmounts `target` until nothing is mounted there: a crash between two mounts can leave
 * one stacked on another. "target is busy" (a process still uses it) is InUse; a mount
 * that vanished meanwhile is fine; anything else is Internal. Not mounted: no-op.
 */
export async function unmountAll(exec: Exec, target: string): Promise<void> {
  // One mountinfo read up front (each costs ~0.7 ms) says how many mounts are stacked;
  // the caller holds the volume's lock, so nothing mounts there while this runs.
  const depth = await mountDepth(target);
  for (let i = 0; i < Math.min(depth, MAX_STACKED); i++) {
    try {
      await exec({ bin: 'umount', args: ['--', target], timeoutMs: MOUNT_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof CommandError && /busy/i.test(err.stderrTail)) throw inUse(`${target} is busy: a process still uses it`);
      if (err instanceof CommandError && /not mounted/i.test(err.stderrTail)) continue; // gone meanwhile
      throw internal(`unmounting ${target} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }
  if (depth > MAX_STACKED) throw internal(`${target} had ${depth} stacked mounts; unmounted ${MAX_STACKED}`);
}
