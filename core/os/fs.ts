/**
 * Filesystem commands as data over the one Exec (mkfs, blkid probe, grow: rare, so they stay
 * executables) and usage read with statfs(2) (no process). Parsers are pure functions of
 * command text.
 */
import { open } from 'node:fs/promises';
import type { FsType } from '../types.js';
import type { CommandSpec, Exec } from './exec.js';
import { CommandError } from './exec.js';
import { internal } from '../errors.js';
import { checkSysPath, sysCall } from './sys.js';
import { sysError } from './sys-errors.js';

const MiB = 1024 * 1024;

/**
 * Smallest image each filesystem is made on, checked at create time (measured with
 * e2fsprogs 1.47, xfsprogs 6.1, btrfs-progs 6.2):
 * - xfs: mkfs.xfs refuses anything under 300 MiB.
 * - btrfs: mkfs.btrfs refuses under 114294784 bytes (109 MiB).
 * - ext4: mkfs works down to 1 MiB, but under a few MiB mke2fs switches to its "floppy"
 *   profile and the journal takes most of the space; 8 MiB still leaves a useful volume.
 */
export const FS_MIN_BYTES: Readonly<Record<FsType, number>> = {
  ext4: 8 * MiB,
  xfs: 300 * MiB,
  btrfs: 114_294_784,
};

/** Whether the filesystem can grow while mounted here (ext4 needs CAP_SYS_RESOURCE, which berth lacks). */
export const FS_GROWS_ONLINE: Readonly<Record<FsType, boolean>> = { ext4: false, xfs: true, btrfs: true };

const MKFS_TIMEOUT_MS = 300_000;
const PROBE_TIMEOUT_MS = 30_000;
const GROW_TIMEOUT_MS = 300_000;

/**
 * The mkfs command for a fresh device. Options chosen for speed and for container use:
 * ext4 initialises inode tables and journal lazily and reserves no blocks for root
 * (a volume's whole size is for its consumer); xfs and btrfs are fast by default.
 * `-F` / `-f` because the device is ours and may hold a stale signature after a crash.
 */
export function mkfsCommand(fsType: FsType, device: string): CommandSpec {
  switch (fsType) {
    case 'ext4':
      return {
        bin: 'mkfs.ext4',
        args: ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', '--', device],
        timeoutMs: MKFS_TIMEOUT_MS,
      };
    case 'xfs':
      return { bin: 'mkfs.xfs', args: ['-q', '-f', '--', device], timeoutMs: MKFS_TIMEOUT_MS };
    case 'btrfs':
      return { bin: 'mkfs.btrfs', args: ['-q', '-f', '--', device], timeoutMs: MKFS_TIMEOUT_MS };
    default:
      return assertNever(fsType);
  }
}

export async function makeFilesystem(exec: Exec, fsType: FsType, device: string): Promise<void> {
  try {
    await exec(mkfsCommand(fsType, device));
  } catch (err) {
    throw internal(`making ${fsType} on ${device} failed: ${errText(err)}`, err);
  }
}

export interface FsProbe {
  /** blkid TYPE, e.g. "ext4", "xfs", "btrfs", or another signature ("swap", "LVM2_member"...). */
  readonly type: string;
  readonly uuid: string | null;
}

/** Pure parser for `blkid -p -o export` output; null when it names no TYPE. */
export function parseBlkidExport(text: string): FsProbe | null {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) kv.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const type = kv.get('TYPE');
  return type ? { type, uuid: kv.get('UUID') ?? null } : null;
}

/**
 * Low-level probe of the device itself (`-p`: no cache, so a fresh mkfs is seen at once).
 * blkid exits 2 when it finds nothing: that is "no filesystem", not an error.
 */
export async function probeFilesystem(exec: Exec, device: string): Promise<FsProbe | null> {
  try {
    const r = await exec({ bin: 'blkid', args: ['-p', '-o', 'export', '--', device], timeoutMs: PROBE_TIMEOUT_MS, okCodes: [0, 2] });
    return r.exitCode === 2 ? null : parseBlkidExport(r.stdout);
  } catch (err) {
    throw internal(`probing ${device} failed: ${errText(err)}`, err);
  }
}

/** Bytes the superblock readers need: btrfs keeps its superblock at 64 KiB (magic at +0x40, size at +0x70, sector size at +0x90). */
export const FS_MAGIC_SPAN = 65_536 + 0x94;

/**
 * Pure check of the superblock magic of the three filesystems berth makes, in the first
 * FS_MAGIC_SPAN bytes of a device. Answers "is it berth's filesystem" without a process;
 * anything else (another signature, or none) is left to blkid.
 */
export function detectFsMagic(head: Buffer): FsType | null {
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'XFSB') return 'xfs';
  if (head.length >= 1082 && head.readUInt16LE(1080) === EXT4_MAGIC) return 'ext4';
  if (head.length >= FS_MAGIC_SPAN && head.toString('latin1', 65_536 + 0x40, 65_536 + 0x48) === '_BHRfS_M') return 'btrfs';
  return null;
}

export async function readFsMagic(device: string): Promise<FsType | null> {
  return detectFsMagic(await readHead(device));
}

/**
 * Pure: the size in bytes the filesystem in `head` (the first FS_MAGIC_SPAN bytes of its
 * device) believes it has, from its superblock; null when it is none of berth's three.
 * xfs: sb_blocksize (BE u32 @4) x sb_dblocks (BE u64 @8); btrfs: total_bytes (LE u64 @0x70
 * of the superblock at 64 KiB); ext4: see parseExt4Superblock.
 */
export function parseFsSize(head: Buffer): number | null {
  switch (detectFsMagic(head)) {
    case 'xfs':
      return head.length >= 16 ? head.readUInt32BE(4) * Number(head.readBigUInt64BE(8)) : null;
    case 'btrfs':
      return Number(head.readBigUInt64LE(65_536 + 0x70));
    case 'ext4':
      return parseExt4Superblock(head.subarray(1024, 2048));
    default:
      return null;
  }
}

/** What the filesystem on `device` says its size is (to tell whether it must grow). */
export async function readFsSize(device: string): Promise<number | null> {
  return parseFsSize(await readHead(device));
}

async function readHead(device: string): Promise<Buffer> {
  const fh = await open(device, 'r');
  try {
    const head = Buffer.alloc(FS_MAGIC_SPAN);
    const { bytesRead } = await fh.read(head, 0, FS_MAGIC_SPAN, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const EXT4_MAGIC = 0xef53;
const EXT4_INCOMPAT_64BIT = 0x80;

/**
 * Pure parser for an ext2/3/4 superblock (the 1024 bytes at offset 1024): the
 * filesystem's size in bytes, or null when the magic is not there.
 */
export function parseExt4Superblock(sb: Buffer): number | null {
  if (sb.length < 0x158 || sb.readUInt16LE(0x38) !== EXT4_MAGIC) return null;
  const blockSize = 1024 * 2 ** sb.readUInt32LE(0x18);
  const lo = sb.readUInt32LE(0x04);
  const hi = sb.readUInt32LE(0x60) & EXT4_INCOMPAT_64BIT ? sb.readUInt32LE(0x150) : 0;
  return (hi * 2 ** 32 + lo) * blockSize;
}

const EXT4_COMPAT_SPARSE_SUPER2 = 0x200;
const EXT4_RO_COMPAT_SPARSE_SUPER = 0x1;
/** mke2fs and resize2fs drop a last block group that has fewer blocks than its metadata plus this. */
const EXT4_LAST_GROUP_MARGIN = 50;

/**
 * Pure: the size in bytes `resize2fs` gives the ext2/3/4 in `sb` (the 1024 bytes at offset
 * 1024) on a device of `deviceBytes`; null when the magic is not there. It fills the device
 * in whole blocks, except that (like mke2fs) it drops a partial last group too small for its
 * own metadata (bitmaps, inode table, and the superblock + descriptor backup when that group
 * carries one) plus 50 blocks. With 4 KiB blocks that is up to a few MiB, so "device bytes
 * minus filesystem bytes" alone would call such a filesystem ungrown forever.
 */
export function ext4GrownSize(sb: Buffer, deviceBytes: number): number | null {
  const current = parseExt4Superblock(sb);
  if (current === null) return null;
  if (sb.length < 0x254) return current;
  const blockSize = 1024 * 2 ** sb.readUInt32LE(0x18);
  const firstData = sb.readUInt32LE(0x14);
  const perGroup = sb.readUInt32LE(0x20);
  const inodeSize = sb.readUInt32LE(0x4c) >= 1 ? sb.readUInt16LE(0x58) : 128; // rev 0 has fixed 128-byte inodes
  const inodeBlocks = Math.ceil((sb.readUInt32LE(0x28) * inodeSize) / blockSize);
  const is64 = (sb.readUInt32LE(0x60) & EXT4_INCOMPAT_64BIT) !== 0;
  const descSize = is64 ? Math.max(sb.readUInt16LE(0xfe), 32) : 32;
  const reservedGdt = sb.readUInt16LE(0xce);
  const sparse2 = (sb.readUInt32LE(0x5c) & EXT4_COMPAT_SPARSE_SUPER2) !== 0;
  const sparse = (sb.readUInt32LE(0x64) & EXT4_RO_COMPAT_SPARSE_SUPER) !== 0;
  if (perGroup === 0) return current;
  const hasSuper = (g: number) => {
    if (g <= 1) return true;
    if (sparse2) return g === sb.readUInt32LE(0x24c) || g === sb.readUInt32LE(0x250); // s_backup_bgs
    return !sparse || [3, 5, 7].some((base) => isPowerOf(g, base));
  };
  let blocks = Math.floor(deviceBytes / blockSize);
  for (;;) {
    const span = blocks - firstData;
    const groups = Math.ceil(span / perGroup);
    const rem = span % perGroup;
    if (groups <= 1 || rem === 0) break;
    const descBlocks = Math.ceil((groups * descSize) / blockSize);
    const overhead = 2 + inodeBlocks + (hasSuper(groups - 1) ? 1 + descBlocks + reservedGdt : 0);
    if (rem >= overhead + EXT4_LAST_GROUP_MARGIN) break;
    blocks -= rem;
  }
  return Math.max(blocks * blockSize, current); // resize2fs without a size never shrinks
}

function isPowerOf(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}

/**
 * Pure: the size the filesystem in `head` (the first FS_MAGIC_SPAN bytes of its device)
 * would have once grown to fill `deviceBytes`, by the rules of the command that grows it
 * (growCommands); null when it is none of berth's three. xfs and btrfs fill the device in
 * whole blocks / sectors (xfs_growfs also drops a last allocation group under 64 blocks,
 * well within any slack); ext4 see ext4GrownSize.
 */
export function grownFsSize(head: Buffer, deviceBytes: number): number | null {
  switch (detectFsMagic(head)) {
    case 'xfs': {
      const blockSize = head.readUInt32BE(4);
      return Math.floor(deviceBytes / blockSize) * blockSize;
    }
    case 'btrfs': {
      const sector = head.readUInt32LE(65_536 + 0x90);
      return sector > 0 ? Math.floor(deviceBytes / sector) * sector : deviceBytes;
    }
    case 'ext4':
      return ext4GrownSize(head.subarray(1024, 2048), deviceBytes);
    default:
      return null;
  }
}

/** A filesystem's size now, and the size growing it to fill its device would give it. */
export interface FsGrowth {
  readonly fsType: FsType;
  readonly sizeBytes: number;
  readonly grownBytes: number;
}

/**
 * Measures the filesystem on `source` (a device, or an image file when not attached)
 * against `deviceBytes`, without a process; null when it holds none of berth's filesystems.
 * `mountpoint` is given when the filesystem is mounted: ext4 and btrfs then still answer
 * from the superblock on the device (ext4 keeps it in the device's page cache, btrfs
 * commits it as a resize ends), but xfs writes its primary superblock back only when its
 * log is checkpointed, tens of seconds after an online grow, so for a mounted xfs the size
 * is what the kernel holds: statfs blocks (data blocks less an internal log) plus that log.
 */
export async function measureFsGrowth(source: string, deviceBytes: number, mountpoint: string | null): Promise<FsGrowth | null> {
  const head = await readHead(source);
  const fsType = detectFsMagic(head);
  const onDisk = parseFsSize(head);
  const grownBytes = grownFsSize(head, deviceBytes);
  if (fsType === null || onDisk === null || grownBytes === null) return null;
  let sizeBytes = onDisk;
  if (fsType === 'xfs' && mountpoint !== null) {
    const s = await sysCall(`reading the size of the filesystem at ${mountpoint}`, (os) => os.statfs(mountpoint));
    const internalLog = head.readBigUInt64BE(0x30) !== 0n ? head.readUInt32BE(0x60) * head.readUInt32BE(4) : 0;
    sizeBytes = s.blocks * s.bsize + internalLog;
  }
  return { fsType, sizeBytes, grownBytes };
}

/**
 * The commands that grow a filesystem to fill its device. xfs and btrfs grow through
 * their mount point (online); ext4 grows offline on the unmounted device, after the
 * forced check resize2fs insists on (e2fsck exit 1 = "errors corrected" is fine).
 */
export function growCommands(fsType: FsType, where: { device: string; mountpoint: string | null }): CommandSpec[] {
  switch (fsType) {
    case 'ext4':
      return [
        { bin: 'e2fsck', args: ['-f', '-p', '--', where.device], timeoutMs: GROW_TIMEOUT_MS, okCodes: [0, 1] },
        { bin: 'resize2fs', args: ['--', where.device], timeoutMs: GROW_TIMEOUT_MS },
      ];
    case 'xfs':
      return [{ bin: 'xfs_growfs', args: ['--', requireMountpoint(fsType, where.mountpoint)], timeoutMs: GROW_TIMEOUT_MS }];
    case 'btrfs':
      return [{ bin: 'btrfs', args: ['filesystem', 'resize', 'max', requireMountpoint(fsType, where.mountpoint)], timeoutMs: GROW_TIMEOUT_MS }];
    default:
      return assertNever(fsType);
  }
}

export async function growFilesystem(exec: Exec, fsType: FsType, where: { device: string; mountpoint: string | null }): Promise<void> {
  for (const cmd of growCommands(fsType, where)) {
    try {
      await exec(cmd);
    } catch (err) {
      throw internal(`growing ${fsType} on ${where.device} failed: ${errText(err)}`, err);
    }
  }
}

/** Mount options berth always uses for a filesystem it made. */
export function fsMountOptions(fsType: FsType): string[] {
  // xfs refuses a second filesystem with the same UUID (an image copy beside its source)
  // unless mounted with nouuid; harmless for a single mount.
  return fsType === 'xfs' ? ['nouuid'] : [];
}

export interface FsUsage {
  readonly totalBytes: number;
  readonly usedBytes: number;
  readonly availableBytes: number;
  readonly totalInodes: number | null;
  readonly usedInodes: number | null;
  readonly availableInodes: number | null;
}

/**
 * Usage of the filesystem holding `path`, from statfs(2) on a thread of its own (a hung
 * filesystem holds that thread, not libuv's pool). Filesystems without a fixed inode
 * table (btrfs reports 0 files) get null inode counts.
 */
export async function fsUsage(path: string): Promise<FsUsage> {
  checkSysPath('path', path);
  const action = `reading the usage of the filesystem at ${path}`;
  const s = await sysCall(action, (os) => os.statfs(path)).catch((err: unknown) => {
    throw sysError(err, { action });
  });
  const hasInodes = s.files > 0;
  return {
    totalBytes: s.blocks * s.bsize,
    usedBytes: (s.blocks - s.bfree) * s.bsize,
    availableBytes: s.bavail * s.bsize,
    totalInodes: hasInodes ? s.files : null,
    usedInodes: hasInodes ? s.files - s.ffree : null,
    availableInodes: hasInodes ? s.ffree : null,
  };
}

function requireMountpoint(fsType: FsType, mountpoint: string | null): string {
  if (!mountpoint) throw internal(`${fsType} grows only while mounted`);
  return mountpoint;
}

function errText(err: unknown): string {
  if (err instanceof CommandError) return err.stderrTail || err.message;
  return err instanceof Error ? err.message : String(err);
}

function assertNever(x: never): never {
  throw internal(`unexpected filesystem ${String(x)}`);
}
