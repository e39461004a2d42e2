/**
 * Mount table reads (straight from /proc/self/mountinfo) and mounts made and taken down with
 * system calls through the addon (sys.ts): mount(2), a bind with its flags applied before it
 * becomes visible, umount2(2). No process runs; every path and option is checked first.
 * The `exec` parameters stay for callers' sake; nothing here runs a command any more.
 */
import { existsSync, readFileSync } from 'node:fs';
import { internal, invalidArgument } from '../errors.js';
import type { Exec } from './exec.js';
import { checkSysPath, sysCall, type SysCallError, type SysConstants } from './sys.js';
import { sysCode, sysError } from './sys-errors.js';

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

/** More stacked mounts than this at one path is a bug, not a state to converge from. */
const MAX_STACKED = 8;

/** Undoes the octal escapes the kernel uses for space, tab, newline and backslash. */
export function unescapeMountPath(s: string): string {
  // Most fields have nothing escaped: no regular expression for them (mountinfo is read on
  // every publish and unpublish).
  if (!s.includes('\\')) return s;
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

/**
 * The mount table of berth's mount namespace. Read in line, not through libuv's pool: the
 * kernel generates the text from its in-memory mount list (no filesystem is asked, so a
 * hung one cannot stall it), which costs tens of microseconds against five pool round
 * trips (open, fstat, read, read, close) for fs/promises, the largest cost of an unpublish.
 */
export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
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

/** Filesystems berth mounts from a device (tmpfs: scratch mounts in tests). */
const FS_TYPES = ['ext4', 'xfs', 'btrfs', 'tmpfs'] as const;
/** Filesystem options berth passes (mount data), with the filesystems that take each. */
const DATA_OPTIONS: ReadonlyArray<{ readonly re: RegExp; readonly fs: readonly string[] }> = [
  { re: /^nouuid$/, fs: ['xfs'] },
  { re: /^discard$/, fs: ['ext4', 'xfs', 'btrfs'] },
  { re: /^size=\d{1,15}[kmg%]?$/, fs: ['tmpfs'] },
  { re: /^mode=[0-7]{3,4}$/, fs: ['tmpfs'] },
];
/** Per-mount flags, as mount(8) spells them. */
const FLAG_OPTIONS = ['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'noatime', 'relatime', 'nodiratime', 'strictatime'] as const;
type FlagOption = (typeof FLAG_OPTIONS)[number];
const isFlagOption = (o: string): o is FlagOption => (FLAG_OPTIONS as readonly string[]).includes(o);

function msFlag(c: SysConstants, o: FlagOption): number {
  const table: Record<FlagOption, number> = {
    ro: c.MS_RDONLY, rw: 0, nosuid: c.MS_NOSUID, nodev: c.MS_NODEV, noexec: c.MS_NOEXEC,
    noatime: c.MS_NOATIME, relatime: c.MS_RELATIME, nodiratime: c.MS_NODIRATIME, strictatime: c.MS_STRICTATIME,
  };
  return table[o];
}

/**
 * Mounts the filesystem on `source` (a device; for tmpfs a name) at `target` with mount(2).
 * Only berth's filesystems and options pass: flags as mount(8) spells them, plus nouuid
 * (xfs), discard (ext4, xfs, btrfs), size= and mode= (tmpfs). A read-write mount of a
 * write-protected device is refused (FailedPrecondition), never made read-only behind the
 * caller's back as mount(8) does: fencing relies on the device's read-only flag.
 */
export async function mount(_exec: Exec, source: string, target: string, opts: MountOptions = {}): Promise<void> {
  const fsType = opts.fsType ?? '';
  if (!(FS_TYPES as readonly string[]).includes(fsType)) throw invalidArgument('fsType', `"${fsType}" is not a filesystem berth mounts (${FS_TYPES.join(', ')})`);
  if (fsType === 'tmpfs') {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(source)) throw invalidArgument('source', `"${source}" is not a tmpfs name`);
  } else checkSysPath('source', source);
  checkSysPath('target', target);
  const flags: FlagOption[] = [];
  const data: string[] = [];
  for (const o of opts.options ?? []) {
    if (isFlagOption(o)) flags.push(o);
    else if (DATA_OPTIONS.some((d) => d.re.test(o) && d.fs.includes(fsType))) data.push(o);
    else throw invalidArgument('options', `"${o}" is not a mount option berth passes to ${fsType}`);
  }
  const readOnly = flags.includes('ro') && flags.lastIndexOf('ro') > flags.lastIndexOf('rw');
  const action = `mounting ${source} (${fsType}) at ${target}`;
  try {
    await sysCall(action, (os) => {
      const bits = flags.filter((f) => f !== 'ro' && f !== 'rw').reduce((acc, f) => acc | msFlag(os.constants, f), readOnly ? os.constants.MS_RDONLY : 0);
      return os.mount(source, target, fsType, bits, data.length ? data.join(',') : null);
    });
  } catch (err) {
    const code = sysCode(err);
    const missing = code === 'ENOENT' ? missingOf({ source: fsType === 'tmpfs' ? null : source, target }) : null;
    // EACCES / EROFS for a read-write mount: say so when the device's read-only flag is why.
    const writeProtected = !readOnly && fsType !== 'tmpfs' && (code === 'EACCES' || code === 'EROFS') &&
      (await sysCall(`reading the read-only flag of ${source}`, (os) => os.blockReadOnly(source)).catch(() => false));
    throw sysError(err, {
      action,
      einval: `wrong fs type, bad option or bad superblock on ${source}, or it is already mounted elsewhere with other options (the kernel log, dmesg, says which)`,
      reasons: {
        EBUSY: `${source} is already mounted or ${target} is busy`,
        ...(missing ? { ENOENT: missing } : {}),
        ...(writeProtected ? { [code!]: `${source} is write-protected (its read-only flag is set): refusing to mount it read-write` } : {}),
        ENODEV: `this kernel has no ${fsType} filesystem (modprobe ${fsType}?)`,
        ENOTBLK: `${source} is not a block device`,
      },
      kinds: writeProtected ? { [code!]: 'FailedPrecondition' } : {},
    });
  }
}

/** Names which of the paths is missing, for an ENOENT that could be either. */
function missingOf(paths: { source: string | null; target: string }): string {
  const gone = [paths.source, paths.target].filter((p): p is string => p !== null && !existsSync(p));
  return gone.length ? `${gone.join(' and ')} ${gone.length > 1 ? 'do' : 'does'} not exist` : 'no such file or directory';
}

/** Flags a bind mount may carry, as consumers spell them (core/targets.ts checks the request). */
const BIND_FLAGS = ['nosuid', 'nodev', 'noexec', 'noatime', 'relatime', 'nodiratime', 'strictatime'] as const;

/** MOUNT_ATTR_* set / clear masks for a bind mount's flags. */
export function bindAttrs(c: SysConstants, readOnly: boolean, flags: readonly string[]): { set: number; clear: number } {
  let set = readOnly ? c.MOUNT_ATTR_RDONLY : 0;
  let clear = 0;
  const atime = (mode: number) => {
    clear |= c.MOUNT_ATTR__ATIME;
    set = (set & ~c.MOUNT_ATTR__ATIME) | mode; // the last atime mode wins, as with mount(8)
  };
  for (const f of flags) {
    if (f === 'nosuid') set |= c.MOUNT_ATTR_NOSUID;
    else if (f === 'nodev') set |= c.MOUNT_ATTR_NODEV;
    else if (f === 'noexec') set |= c.MOUNT_ATTR_NOEXEC;
    else if (f === 'nodiratime') set |= c.MOUNT_ATTR_NODIRATIME;
    else if (f === 'noatime') atime(c.MOUNT_ATTR_NOATIME);
    else if (f === 'relatime') atime(c.MOUNT_ATTR_RELATIME);
    else if (f === 'strictatime') atime(c.MOUNT_ATTR_STRICTATIME);
    else throw invalidArgument('mountFlags', `"${f}" is not an allowed bind mount flag (allowed: ${BIND_FLAGS.join(', ')})`);
  }
  return { set, clear };
}

/**
 * Bind-mounts `source` onto `target` (a directory, or a file for block devices) with the
 * new mount API: a detached copy of the source (open_tree) gets read-only and the flags
 * (mount_setattr) before it is attached (move_mount), so the target never shows the bind
 * without them, not even after a kill -9 between the calls. The target is opened by the
 * kernel with no symbolic link anywhere in its path (openat2 RESOLVE_NO_SYMLINKS): a link
 * swapped in after berth's own checks is refused (InvalidArgument naming target), never
 * followed. The source mount's own restrictions (nosuid, ro, ...) carry over and are never
 * loosened. Kernels without that API: mount(2), then a remount for the flags.
 */
export async function bindMount(
  _exec: Exec,
  source: string,
  target: string,
  opts: { readOnly?: boolean; flags?: readonly string[] } = {},
): Promise<void> {
  checkSysPath('source', source);
  checkSysPath('target', target);
  const shown = [...(opts.readOnly ? ['ro'] : []), ...(opts.flags ?? [])];
  const action = `bind-mounting ${source} on ${target}${shown.length ? ` (${shown.join(',')})` : ''}`;
  try {
    await sysCall(action, (os) => {
      const { set, clear } = bindAttrs(os.constants, opts.readOnly === true, opts.flags ?? []);
      return os.bind(source, target, set, clear);
    });
  } catch (err) {
    if (sysCode(err) === 'ELOOP') {
      throw invalidArgument('target', `"${target}" passes through a symbolic link; berth mounts only on real paths (ELOOP from ${(err as SysCallError).syscall})`);
    }
    throw sysError(err, {
      action,
      einval: 'the source cannot be bound here (an unbindable mount?) or the target cannot take a mount',
      reasons: {
        ...(sysCode(err) === 'ENOENT' ? { ENOENT: missingOf({ source, target }) } : {}),
        ENOTDIR: 'the source is a directory and the target is not (or the other way round)',
      },
    });
  }
}

/**
 * The usual publish in one system-call thread: makes a missing target (a directory, or an
 * empty file when `file`) and binds `source` there, with no symbolic link anywhere in the
 * target's path (native/ops.c berth_bind_create), instead of a round of path checks, a
 * mkdir and the bind, each a trip to another thread. Says whether it made the target.
 * null when the kernel refused any step (a link, a missing directory above the target, a
 * target of the other kind, no openat2, a refused bind): nothing it made is left, and the
 * caller takes the step-by-step way, whose checks name what is wrong.
 */
export async function bindMountCreating(
  source: string,
  target: string,
  opts: { readOnly?: boolean; flags?: readonly string[]; file: boolean },
): Promise<{ created: boolean } | null> {
  checkSysPath('source', source);
  checkSysPath('target', target);
  try {
    const created = await sysCall(`bind-mounting ${source} on ${target}`, (os) => {
      const { set, clear } = bindAttrs(os.constants, opts.readOnly === true, opts.flags ?? []);
      return os.bindCreate(source, target, set, clear, opts.file ? os.constants.TARGET_FILE : os.constants.TARGET_DIR);
    });
    return { created };
  } catch (err) {
    // A call that did not return in time (a hung filesystem) or an addon that is not there is
    // the caller's error as it is; only a refusal from the kernel sends it the long way.
    if (sysCode(err) === null) throw err;
    return null;
  }
}

/**
 * umount2 with berth's flags; EINVAL (not a mount point) is returned, not thrown. With
 * `removeEmpty`, the target goes too in the same call when it is an empty directory or file.
 */
async function umount2(target: string, action: string, removeEmpty = false): Promise<'unmounted' | 'removed' | 'not-mounted'> {
  checkSysPath('target', target);
  try {
    if (!removeEmpty) await sysCall(action, (os) => os.umount(target, 0));
    else if (await sysCall(action, (os) => os.umountRemove(target))) return 'removed';
    return 'unmounted';
  } catch (err) {
    if (sysCode(err) === 'EINVAL') return 'not-mounted';
    throw sysError(err, { action, reasons: { EBUSY: 'target is busy: a process still uses it' } });
  }
}

/** The topmost mount at `target`, which the caller knows is there: not a mount point is Internal. */
async function unmountTop(target: string, removeEmpty: boolean): Promise<'unmounted' | 'removed'> {
  const action = `unmounting ${target}`;
  const done = await umount2(target, action, removeEmpty);
  if (done === 'not-mounted') throw internal(`${action} failed: not a mount point (EINVAL from umount2)`);
  return done;
}

/** Unmounts the topmost mount at `target` without looking first (the caller knows it is mounted). */
export async function unmountBind(_exec: Exec, target: string): Promise<void> {
  await unmountTop(target, false);
}

/**
 * unmountBind, then the target taken away in the same system-call thread when it is an
 * empty directory or an empty file (what berth made there for the bind), found with no
 * symbolic link in its path; anything else stays, as removeTarget (core/targets.ts) leaves
 * it. One trip to another thread instead of two. Errors are the unmount's, as unmountBind's.
 */
export async function unmountBindRemoving(target: string): Promise<boolean> {
  return (await unmountTop(target, true)) === 'removed';
}

/** How many mounts are stacked at exactly `target` (0: not a mount point). One mountinfo read. */
export async function mountDepth(target: string): Promise<number> {
  let n = 0;
  for (const e of await readMountInfo()) if (e.target === target) n++;
  return n;
}

/** Unmounts `target`; not mounted is success (idempotent). */
export async function unmount(_exec: Exec, target: string): Promise<void> {
  if (!(await isMountpoint(target))) return;
  await umount2(target, `unmounting ${target}`);
}

/**
 * Unmounts `target` until nothing is mounted there: a crash between two mounts can leave
 * one stacked on another. "target is busy" (a process still uses it) is InUse; a mount
 * that vanished meanwhile is fine; anything else is typed by its errno. Not mounted: no-op.
 */
export async function unmountAll(_exec: Exec, target: string): Promise<void> {
  // One mountinfo read up front (each costs ~0.7 ms) says how many mounts are stacked;
  // the caller holds the volume's lock, so nothing mounts there while this runs.
  const depth = await mountDepth(target);
  for (let i = 0; i < Math.min(depth, MAX_STACKED); i++) {
    if ((await umount2(target, `unmounting ${target}`)) === 'not-mounted') break; // gone meanwhile
  }
  if (depth > MAX_STACKED) throw internal(`${target} had ${depth} stacked mounts; unmounted ${MAX_STACKED}`);
}
