/**
 * Block-device flags and filesystem fencing as system calls through the addon (sys.ts):
 * the device's read-only flag (BLKROGET / BLKROSET) and FS_IOC_SHUTDOWN.
 *
 * FS_IOC_SHUTDOWN (xfs, ext4; btrfs only on kernels built with CONFIG_BTRFS_EXPERIMENTAL,
 * elsewhere Unsupported) stops a mounted filesystem at once:
 * afterwards every operation on it fails with EIO, and it can only be unmounted (umount
 * works; the device can then be detached). The three modes differ in what reaches the disk:
 * - 'flush' (FS_SHUTDOWN_FLAGS_DEFAULT): freezes the device first, so dirty data and
 *   metadata are written; consistent on disk, but it waits for the storage.
 * - 'flush-log' (FS_SHUTDOWN_FLAGS_LOGFLUSH): commits the journal, drops dirty data; waits
 *   for one log write.
 * - 'no-flush' (FS_SHUTDOWN_FLAGS_NOLOGFLUSH): writes nothing and never waits for the
 *   storage; the journal recovers the filesystem at its next mount. This is the fencing
 *   mode: a node that lost its claim on shared storage must stop writing now, even when
 *   the storage no longer answers.
 */
import { invalidArgument } from '../errors.js';
import { checkSysPath, sysCall, type SysConstants } from './sys.js';
import { sysError } from './sys-errors.js';

/** Whether the device's read-only flag is set (BLKROGET). */
export async function blockDeviceReadOnly(device: string): Promise<boolean> {
  checkSysPath('device', device);
  const action = `reading the read-only flag of ${device}`;
  return sysCall(action, (os) => os.blockReadOnly(device)).catch((err: unknown) => {
    throw sysError(err, { action });
  });
}

/** Sets or clears the device's read-only flag (BLKROSET; needs CAP_SYS_ADMIN). */
export async function setBlockDeviceReadOnly(device: string, readOnly: boolean): Promise<void> {
  checkSysPath('device', device);
  const action = `${readOnly ? 'setting' : 'clearing'} the read-only flag of ${device}`;
  await sysCall(action, (os) => os.setBlockReadOnly(device, readOnly)).catch((err: unknown) => {
    throw sysError(err, { action });
  });
}

/**
 * Checks the read-only flag of a device berth got (from another node's fencing, or a
 * write-protected disk) and clears it when set. Returns whether it was set.
 */
export async function clearBlockDeviceReadOnly(device: string): Promise<boolean> {
  if (!(await blockDeviceReadOnly(device))) return false;
  await setBlockDeviceReadOnly(device, false);
  return true;
}

export const SHUTDOWN_MODES = ['flush', 'flush-log', 'no-flush'] as const;
export type ShutdownMode = (typeof SHUTDOWN_MODES)[number];

function shutdownFlag(c: SysConstants, how: ShutdownMode): number {
  return { flush: c.FS_SHUTDOWN_FLAGS_DEFAULT, 'flush-log': c.FS_SHUTDOWN_FLAGS_LOGFLUSH, 'no-flush': c.FS_SHUTDOWN_FLAGS_NOLOGFLUSH }[how];
}

/**
 * Shuts down the filesystem mounted at `mountpoint` (see the modes above). Refused unless
 * `mountpoint` is the root of a mount, and, with `dev` (major:minor as /proc/self/mountinfo
 * shows the mount), unless that mount's filesystem is that device: a directory that is not
 * (or no longer) mounted must never shut down the filesystem it lives on.
 * @example await shutdownFilesystem('/var/lib/berth/mounts/v1', 'no-flush', { dev: { major: 7, minor: 3 } });
 */
export async function shutdownFilesystem(
  mountpoint: string,
  how: ShutdownMode,
  opts: { dev?: { major: number; minor: number } } = {},
): Promise<void> {
  checkSysPath('mountpoint', mountpoint);
  if (!(SHUTDOWN_MODES as readonly string[]).includes(how)) throw invalidArgument('how', `"${String(how)}" is not one of ${SHUTDOWN_MODES.join(', ')}`);
  const dev = opts.dev;
  if (dev && ![dev.major, dev.minor].every((n) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff)) {
    throw invalidArgument('dev', 'major and minor must be whole numbers');
  }
  const action = `shutting down the filesystem at ${mountpoint} (${how})`;
  await sysCall(action, (os) => os.fsShutdown(mountpoint, shutdownFlag(os.constants, how), dev?.major ?? null, dev?.minor ?? null)).catch((err: unknown) => {
    throw sysError(err, {
      action,
      einval: `${mountpoint} is not the root of a mount`,
      reasons: {
        EXDEV: `the filesystem at ${mountpoint} is not on device ${dev ? `${dev.major}:${dev.minor}` : '?'}`,
        ENOTTY: 'this filesystem has no shutdown ioctl',
        EOPNOTSUPP: 'this filesystem has no shutdown ioctl',
      },
    });
  });
}
