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
  /** "major:minor" of the filesystem (st_dev of its files; a bind mount shows its source's). */
  readonly majorMinor: string;
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
      majorMinor: left[2] ?? '',
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

/** What a bind mount of a path shows, as mountinfo says it: the filesystem and the root within it. */
export interface BindSource {
  readonly majorMinor: string;
  readonly root: string;
}

/** One mount, as mountinfo names it: its id (unique while it exists) and what it shows. */
export interface MountIdentity extends BindSource {
  readonly id: number;
}

const shows = (e: BindSource, s: BindSource) => e.majorMinor === s.majorMinor && e.root === s.root;

/**
 * The mounts stacked at exactly `target`, bottom first: each one's parent is the one below
 * it. (Mounts at the same path under a mount that was itself covered later are hidden and
 * not part of what the path shows; the last such chain in the table is the visible one.)
 */
export function mountStack(table: readonly MountEntry[], target: string): MountEntry[] {
  const at = table.filter((e) => e.target === target);
  if (at.length <= 1) return at;
  const ids = new Set(at.map((e) => e.id));
  const above = new Map(at.map((e) => [e.parentId, e]));
  const bottoms = at.filter((e) => !ids.has(e.parentId));
  const out: MountEntry[] = [];
  for (let e = bottoms.at(-1); e !== undefined && out.length < at.length; e = above.get(e.id)) out.push(e);
  return out;
}

/**
 * What a bind mount of `path` would show (and a bind made from it does show): the
 * filesystem of the mount holding `path`, and `path`'s place inside that filesystem.
 * `path` must be absolute and free of symlinks (berth's own managed paths are).
 */
export function bindSourceOf(table: readonly MountEntry[], path: string): BindSource | null {
  let at: string | null = null;
  for (const e of table) {
    const inside = e.target === path || e.target === '/' || path.startsWith(`${e.target}/`);
    if (inside && (at === null || e.target.length > at.length)) at = e.target;
  }
  // The longest mount point holding the path; of the mounts stacked there, the top one.
  const holder = at === null ? undefined : mountStack(table, at).at(-1);
  if (holder === undefined) return null;
  const rel = holder.target === '/' ? path.slice(1) : path.slice(holder.target.length + 1);
  const root = rel === '' ? holder.root : holder.root === '/' ? `/${rel}` : `${holder.root}/${rel}`;
  return { majorMinor: holder.majorMinor, root };
}

/** Which mounts at a target are berth's bind (ownBind's answer). */
export interface OwnBind {
  /** How many mounts to take off the top of the stack: berth's bind and its duplicates above it. */
  readonly count: number;
  /** A mount berth did not make that sits on top of berth's bind (then nothing may be unmounted). */
  readonly coveredBy: MountEntry | null;
}

/**
 * Answers "which mount at this target is berth's", from the stack alone (mountStack):
 * - the mount berth recorded (same id, major:minor and root: an id reused by another mount
 *   shows something else), plus copies of it stacked right above (a crash between two binds);
 * - when none is recorded (a crash before the record was written) or the recorded one is
 *   gone (a crash between a re-bind and its record): the mounts on top of the stack that
 *   show the bind's source.
 * Never anything else: a mount that was there before berth's stays, and a foreign mount on
 * top of berth's is reported in `coveredBy` instead of being counted.
 * @example const { count, coveredBy } = ownBind(mountStack(table, '/mnt/a'), { mount: recorded, source: null });
 */
export function ownBind(stack: readonly MountEntry[], want: { mount: MountIdentity | null; source: BindSource | null }): OwnBind {
  const none: OwnBind = { count: 0, coveredBy: null };
  if (want.mount !== null) {
    const m = want.mount;
    const base = stack.findIndex((e) => e.id === m.id && shows(e, m));
    if (base >= 0) {
      const foreign = stack.slice(base + 1).find((e) => !shows(e, m));
      return foreign ? { count: 0, coveredBy: foreign } : { count: stack.length - base, coveredBy: null };
    }
  }
  if (want.source === null) return none;
  const src = want.source;
  let n = 0;
  while (n < stack.length && shows(stack[stack.length - 1 - n]!, src)) n++;
  if (n > 0) return { count: n, coveredBy: null };
  const hidden = stack.findIndex((e) => shows(e, src));
  return hidden < 0 ? none : { count: 0, coveredBy: stack[hidden + 1]! };
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
