/**
 * Loop devices: attach an image, find the devices backing an image, detach, refresh
 * capacity, device size. Attach, detach and capacity are system calls through the addon
 * (sys.ts: /dev/loop-control, LOOP_CONFIGURE, LOOP_CLR_FD, LOOP_SET_CAPACITY, BLKGETSIZE64);
 * listings come from sysfs, with `losetup --json --list` (parsed by a pure function, tested
 * with fixtures) only where sysfs cannot be read.
 *
 * Every call here is idempotent on purpose (backends rely on it after a crash):
 * attaching an image that already has a device returns that device (as losetup
 * --nooverlap did), detaching a device that is already gone is success.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Exec } from './exec.js';
import { checkLoopDevice, checkSysPath, isSysCallError, sysCall } from './sys.js';
import { sysCode, sysError } from './sys-errors.js';

export interface LoopDevice {
  /** "/dev/loopN". */
  readonly name: string;
  /** Absolute path of the backing file as the kernel reports it, without " (deleted)". */
  readonly backFile: string;
  /** The backing file was unlinked while attached (the kernel appends " (deleted)"). */
  readonly deleted: boolean;
  readonly offset: number;
  readonly sizeLimit: number;
  readonly readOnly: boolean;
  readonly autoclear: boolean;
  readonly directIo: boolean;
}

const LOSETUP_TIMEOUT_MS = 30_000;
const DELETED_SUFFIX = ' (deleted)';

const num = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : 0);
// Older util-linux prints booleans as "0"/"1" strings, newer as JSON booleans.
const bool = (v: unknown): boolean => v === true || v === 1 || v === '1' || v === 'true';

/** Pure parser for `losetup --json --list` output (empty output means no devices). */
export function parseLosetupJson(text: string): LoopDevice[] {
  if (!text.trim()) return [];
  const doc = JSON.parse(text) as { loopdevices?: Array<Record<string, unknown>> };
  const out: LoopDevice[] = [];
  for (const d of doc.loopdevices ?? []) {
    const name = typeof d['name'] === 'string' ? d['name'] : '';
    if (!name) continue;
    let backFile = typeof d['back-file'] === 'string' ? d['back-file'] : '';
    const deleted = backFile.endsWith(DELETED_SUFFIX);
    if (deleted) backFile = backFile.slice(0, -DELETED_SUFFIX.length);
    out.push({
      name,
      backFile,
      deleted,
      offset: num(d['offset']),
      sizeLimit: num(d['sizelimit']),
      readOnly: bool(d['ro']),
      autoclear: bool(d['autoclear']),
      directIo: bool(d['dio']),
    });
  }
  return out;
}

/**
 * Pure parser for one device's sysfs attributes (/sys/block/loopN/loop/* and ../ro);
 * null when the device has no backing file (not attached).
 */
export function parseSysfsLoop(name: string, attrs: Readonly<Record<string, string | undefined>>): LoopDevice | null {
  let backFile = (attrs['backing_file'] ?? '').replace(/\n$/, '');
  if (!backFile) return null;
  const deleted = backFile.endsWith(DELETED_SUFFIX);
  if (deleted) backFile = backFile.slice(0, -DELETED_SUFFIX.length);
  return {
    name: `/dev/${name}`,
    backFile,
    deleted,
    offset: num(attrs['offset']?.trim()),
    sizeLimit: num(attrs['sizelimit']?.trim()),
    readOnly: bool(attrs['ro']?.trim()),
    autoclear: bool(attrs['autoclear']?.trim()),
    directIo: bool(attrs['dio']?.trim()),
  };
}

export interface ListOptions {
  /** Where sysfs block devices are (tests point this at a fixture tree). */
  readonly sysBlock?: string;
}

const SYSFS_ATTRS = ['backing_file', 'offset', 'sizelimit', 'autoclear', 'dio'] as const;

/**
 * Attached loop devices read from sysfs; null when sysfs cannot be read (then losetup answers).
 * With `wanted`, only devices whose backing file (without " (deleted)") passes it are read in
 * full: a lookup for one image reads one file per device instead of six.
 */
export async function readSysfsLoops(sysBlock = '/sys/block', wanted?: (backFile: string) => boolean): Promise<LoopDevice[] | null> {
  // Read in line on purpose: sysfs attributes are generated in memory (no disk I/O, so no
  // filesystem can hang it), and every async read would be a round trip through libuv's
  // pool: ~10 of them in turn made a loop detach cost 3 ms where its LOOP_CLR_FD costs 0.1.
  let names: string[];
  try {
    names = readdirSync(sysBlock).filter((n) => /^loop\d+$/.test(n));
  } catch {
    return null;
  }
  const read = (p: string): string | undefined => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  };
  const devices = names.map((n) => {
    const dir = `${sysBlock}/${n}`;
    // Unattached devices have no loop/ directory.
    if (!statSync(`${dir}/loop`, { throwIfNoEntry: false })) return null;
    const backing = read(`${dir}/loop/backing_file`);
    if (backing === undefined) return null; // detached meanwhile
    if (wanted && !wanted(backing.replace(/\n$/, '').replace(/ \(deleted\)$/, ''))) return null;
    const attrs: Record<string, string | undefined> = { backing_file: backing, ro: read(`${dir}/ro`) };
    for (const a of SYSFS_ATTRS.slice(1)) attrs[a] = read(`${dir}/loop/${a}`);
    return parseSysfsLoop(n, attrs);
  });
  return devices.filter((d): d is LoopDevice => d !== null).sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
}

/**
 * Every attached loop device on the machine. Read from sysfs (no process: this runs on
 * every attach, mount, detach and inspect), falling back to `losetup --json --list`.
 */
export async function listLoopDevices(exec: Exec, opts: ListOptions = {}): Promise<LoopDevice[]> {
  return listMatching(exec, opts);
}

async function listMatching(exec: Exec, opts: ListOptions, wanted?: (backFile: string) => boolean): Promise<LoopDevice[]> {
  const fromSysfs = await readSysfsLoops(opts.sysBlock, wanted);
  if (fromSysfs) return fromSysfs;
  const r = await exec({ bin: 'losetup', args: ['--json', '--list'], timeoutMs: LOSETUP_TIMEOUT_MS });
  const all = parseLosetupJson(r.stdout);
  return wanted ? all.filter((d) => wanted(d.backFile)) : all;
}

/**
 * Whether `device` is still attached with `image` as its backing file: one sysfs read
 * (after a detach, to see whether the kernel deferred it) instead of a scan of every device.
 */
export async function stillBacks(exec: Exec, device: string, image: string, opts: ListOptions = {}): Promise<boolean> {
  const sysBlock = opts.sysBlock ?? '/sys/block';
  // When sysfs itself is unreadable, losetup answers.
  if (!statSync(sysBlock, { throwIfNoEntry: false })) return (await findLoopDevices(exec, image, opts)).some((d) => d.name === device);
  // In-line stat (sysfs is in memory): the usual answer, no loop/ directory = detached, costs no thread-pool trip.
  const loopDir = `${sysBlock}/${basename(device)}/loop`;
  if (!statSync(loopDir, { throwIfNoEntry: false })) return false;
  let text: string | null = null;
  try {
    text = readFileSync(`${loopDir}/backing_file`, 'utf8');
  } catch {
    // detached meanwhile
  }
  return text !== null && text.replace(/\n$/, '').replace(/ \(deleted\)$/, '') === image;
}

/**
 * Devices whose backing file is `image` (an absolute, already resolved path), including
 * devices whose image was deleted while attached, so they can still be freed.
 */
export async function findLoopDevices(exec: Exec, image: string, opts: ListOptions = {}): Promise<LoopDevice[]> {
  return listMatching(exec, opts, (f) => f === image);
}

/** Devices whose backing file lies directly or deeper under `dir` (for leftovers sweeps). */
export async function findLoopDevicesUnder(exec: Exec, dir: string, opts: ListOptions = {}): Promise<LoopDevice[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return listMatching(exec, opts, (f) => f.startsWith(prefix));
}

/**
 * Attaches `image` to a free loop device and returns its path, without a process: berth
 * opens the image (read-write, or read-only), asks /dev/loop-control for a free device
 * (LOOP_CTL_GET_FREE) and binds the image to it with one LOOP_CONFIGURE (Linux 5.8+);
 * when another process configures that device first (EBUSY) it asks again. An image that
 * is already attached gets its device back instead of a second one (as losetup
 * --nooverlap: same path, then same device and inode), checked and attached under an
 * exclusive lock on the image, so two berth processes attaching one image get one device.
 */
export async function attachLoop(_exec: Exec, image: string, opts: { readOnly?: boolean } = {}): Promise<string> {
  checkSysPath('image', image);
  const action = `attaching ${image} to a loop device`;
  try {
    return (await sysCall(action, (os) => os.loopAttach(image, opts.readOnly === true))).device;
  } catch (err) {
    const step = isSysCallError(err) ? err.syscall : '';
    const noFree = step === 'LOOP_CTL_GET_FREE' ? 'ResourceExhausted' : undefined;
    throw sysError(err, {
      action,
      einval: 'the image is not a regular file, or this kernel lacks LOOP_CONFIGURE (Linux 5.8+)',
      reasons: {
        ENOENT: step === 'open the image' ? `image ${image} does not exist` : 'no loop device support here (/dev/loop-control or the device node is missing)',
        EBUSY: 'no free loop device: other processes took every free one first',
        ...(noFree ? { ENODEV: 'no free loop device', ENXIO: 'no free loop device' } : {}),
      },
      kinds: { EBUSY: 'ResourceExhausted', ...(step === 'open the image' ? {} : { ENOENT: 'Unsupported' }), ...(noFree ? { ENODEV: noFree, ENXIO: noFree } : {}) },
    });
  }
}

/**
 * Detaches one loop device (LOOP_CLR_FD). A device that is no longer attached is success.
 * The kernel defers the detach (sets autoclear) while the device is still open, e.g. mounted
 * or held by udev for a moment; it completes at the last close (see stillBacks).
 */
export async function detachLoop(_exec: Exec, device: string): Promise<void> {
  checkLoopDevice('device', device);
  try {
    await sysCall(`detaching ${device}`, (os) => os.loopDetach(device));
  } catch (err) {
    const code = sysCode(err);
    if (code === 'ENXIO' || code === 'ENOENT') return; // not attached, or the node is gone
    throw sysError(err, { action: `detaching ${device}` });
  }
}

/** Makes the kernel re-read the backing file's size after the image grew (LOOP_SET_CAPACITY). */
export async function refreshLoopCapacity(_exec: Exec, device: string): Promise<void> {
  checkLoopDevice('device', device);
  const action = `refreshing the capacity of ${device}`;
  try {
    await sysCall(action, (os) => os.loopSetCapacity(device));
  } catch (err) {
    throw sysError(err, { action, reasons: { ENXIO: `${device} is not attached` }, kinds: { ENXIO: 'NotFound' } });
  }
}

/** Size of a block device in bytes (BLKGETSIZE64). */
export async function blockDeviceSize(device: string): Promise<number> {
  checkSysPath('device', device);
  const action = `reading the size of ${device}`;
  try {
    return await sysCall(action, (os) => os.blockSize(device));
  } catch (err) {
    throw sysError(err, { action, reasons: { ENOTBLK: `${device} is not a block device` } });
  }
}
