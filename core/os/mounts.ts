/**
 * Mount table reads (straight from /proc/self/mountinfo, no process) and the mount /
 * umount commands as data over the one Exec. Paths are single argv elements.
 */
import { readFile } from 'node:fs/promises';
import type { Exec } from './exec.js';

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
 * Bind-mounts `source` onto `target` (a directory, or a file for block devices).
 * Read-only bind mounts need a remount on older util-linux, so it is done in two steps.
 */
export async function bindMount(exec: Exec, source: string, target: string, opts: { readOnly?: boolean } = {}): Promise<void> {
  await exec({ bin: 'mount', args: ['--bind', '--', source, target], timeoutMs: MOUNT_TIMEOUT_MS });
  if (opts.readOnly) {
    await exec({ bin: 'mount', args: ['-o', 'remount,bind,ro', '--', target], timeoutMs: MOUNT_TIMEOUT_MS });
  }
}

/** Unmounts `target`; not mounted is success (idempotent). */
export async function unmount(exec: Exec, target: string): Promise<void> {
  if (!(await isMountpoint(target))) return;
  await exec({ bin: 'umount', args: ['--', target], timeoutMs: MOUNT_TIMEOUT_MS });
}
