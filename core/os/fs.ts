/**
 * Filesystem commands as data over the one Exec (mkfs, blkid probe, grow) and usage
 * read with statfs(2) (no process). Parsers are pure functions of command text.
 */
import { open, statfs } from 'node:fs/promises';
import type { FsType } from '../types.js';
import type { CommandSpec, Exec } from './exec.js';
import { CommandError } from './exec.js';
import { internal } from '../errors.js';

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

/** Bytes the superblock readers need: btrfs keeps its superblock at 64 KiB (magic at +0x40, size at +0x70). */
export const FS_MAGIC_SPAN = 65_536 + 0x78;

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
 * Usage of the filesystem holding `path`, from statfs(2). Filesystems without a
 * fixed inode table (btrfs reports 0 files) get null inode counts.
 */
export async function fsUsage(path: string): Promise<FsUsage> {
  const s = await statfs(path);
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
