/**
 * Fencing a filesystem: the shutdown ioctl (FS_IOC_SHUTDOWN, XFS_IOC_GOINGDOWN; ext4 and
 * btrfs answer it too) on a mount point. After it every write to that filesystem fails with
 * EIO, through open files too, and it unmounts cleanly; what was synced before is on disk.
 * The log is flushed first, so a write its consumer was told was synced stays synced.
 *
 * Run as `xfs_io -x -c "shutdown -f"` on the mount point: the path is one argv element, checked
 * to be absolute and plain before it gets there.
 */
import { invalidArgument } from '../errors.js';
import type { Exec } from './exec.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

/** Shuts down the filesystem mounted at `mountpoint` (the caller checked it is a mount of berth's). */
export async function shutdownFs(exec: Exec, mountpoint: string): Promise<void> {
  if (!mountpoint.startsWith('/') || mountpoint.includes('\0') || mountpoint.split('/').includes('..')) {
    throw invalidArgument('mountpoint', `${JSON.stringify(mountpoint)} is not a plain absolute path`);
  }
  await exec({ bin: 'xfs_io', args: ['-x', '-c', 'shutdown -f', mountpoint], timeoutMs: SHUTDOWN_TIMEOUT_MS });
}
