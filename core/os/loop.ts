/**
 * losetup as data over the one Exec: attach an image, find the devices backing an
 * image, detach, refresh capacity. The listing parser is a pure function of
 * `losetup --json --list` text so it is tested with fixtures.
 *
 * Every call here is idempotent on purpose (backends rely on it after a crash):
 * attaching an image that already has a device returns that device (`--nooverlap`),
 * detaching a device that is already gone is success.
 */
import { statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { CommandError, type Exec } from './exec.js';
import { internal, notFound, resourceExhausted } from '../errors.js';

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
  let names: string[];
  try {
    names = (await readdir(sysBlock)).filter((n) => /^loop\d+$/.test(n));
  } catch {
    return null;
  }
  const read = (p: string) => readFile(p, 'utf8').catch(() => undefined);
  const devices = await Promise.all(
    names.map(async (n) => {
      const dir = `${sysBlock}/${n}`;
      // The first pass over every device is synchronous on purpose: sysfs attributes are
      // generated in memory (no disk I/O), and ~40 async reads cost 1-3 ms of thread-pool
      // round trips against ~0.3 ms done in line. Unattached devices have no loop/ directory.
      if (!statSync(`${dir}/loop`, { throwIfNoEntry: false })) return null;
      const backing = await read(`${dir}/loop/backing_file`);
      if (backing === undefined) return null; // detached meanwhile
      if (wanted && !wanted(backing.replace(/\n$/, '').replace(/ \(deleted\)$/, ''))) return null;
      const attrs: Record<string, string | undefined> = { backing_file: backing, ro: await read(`${dir}/ro`) };
      for (const a of SYSFS_ATTRS.slice(1)) attrs[a] = await read(`${dir}/loop/${a}`);
      return parseSysfsLoop(n, attrs);
    }),
  );
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
  const text = await readFile(`${loopDir}/backing_file`, 'utf8').catch(() => null);
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
 * Attaches `image` to a free loop device and returns its path. With `--nooverlap`
 * losetup returns the existing device when the image is already attached, so this
 * is idempotent; the caller should still look first (findLoopDevices) to avoid a process.
 */
export async function attachLoop(exec: Exec, image: string, opts: { readOnly?: boolean } = {}): Promise<string> {
  const args = ['--find', '--show', '--nooverlap'];
  if (opts.readOnly) args.push('--read-only');
  args.push('--', image);
  try {
    const r = await exec({ bin: 'losetup', args, timeoutMs: LOSETUP_TIMEOUT_MS });
    const dev = r.stdout.trim().split('\n').pop()?.trim() ?? '';
    if (!dev.startsWith('/dev/')) throw internal(`losetup printed no device for ${image}: ${JSON.stringify(r.stdout)}`);
    return dev;
  } catch (err) {
    if (err instanceof CommandError) {
      if (/no such file/i.test(err.stderrTail)) throw notFound(`image ${image} does not exist`);
      if (/could not find any free loop device|no free loop/i.test(err.stderrTail)) {
        throw resourceExhausted(`no free loop device to attach ${image}`);
      }
      throw internal(`attaching ${image} failed: ${err.message}`, err);
    }
    throw err;
  }
}

/**
 * Detaches one device. A device that is no longer attached is success. The kernel
 * defers the detach (autoclear) when the device is still open, e.g. mounted.
 */
export async function detachLoop(exec: Exec, device: string): Promise<void> {
  try {
    await exec({ bin: 'losetup', args: ['--detach', device], timeoutMs: LOSETUP_TIMEOUT_MS });
  } catch (err) {
    if (err instanceof CommandError && /no such device|no such file/i.test(err.stderrTail)) return;
    throw internal(`detaching ${device} failed: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

/** Makes the kernel re-read the backing file's size after the image grew (`losetup -c`). */
export async function refreshLoopCapacity(exec: Exec, device: string): Promise<void> {
  try {
    await exec({ bin: 'losetup', args: ['--set-capacity', device], timeoutMs: LOSETUP_TIMEOUT_MS });
  } catch (err) {
    throw internal(`refreshing the capacity of ${device} failed: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

/** Size of a block device in bytes from sysfs (no process): /sys/class/block/<name>/size counts 512-byte sectors. */
export async function blockDeviceSize(device: string): Promise<number> {
  const name = basename(device);
  const text = await readFile(`/sys/class/block/${name}/size`, 'utf8').catch((err: unknown) => {
    throw internal(`cannot read the size of ${device}: ${err instanceof Error ? err.message : String(err)}`, err);
  });
  return Number(text.trim()) * 512;
}
