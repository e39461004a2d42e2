/**
 * Fencing a filesystem: the shutdown ioctl (FS_IOC_SHUTDOWN through the addon, block.ts) on
 * a mount point. After it every write to that filesystem fails with EIO, through open files
 * too, and it unmounts cleanly.
 *
 * The mode is 'no-flush' (block.ts: the fencing mode): nothing more is written and nothing
 * waits for the storage, which a node cut off from the cluster may not reach either. What a
 * consumer was told is synced (fsync, O_SYNC) is already in the journal on disk; the journal
 * is replayed by the next mount, on whichever node takes the volume over.
 */
import { shutdownFilesystem } from './block.js';
import type { MountEntry } from './mounts.js';

/**
 * Shuts down the filesystem of `mount` (an entry of this namespace's mount table, which the
 * caller found at a path of berth's). The device is checked too: if the path no longer has
 * that filesystem mounted, the call is refused instead of shutting down another one.
 * @example await shutdownMount(await findMount('/var/lib/berth/mounts/vol-1'));
 */
export async function shutdownMount(mount: Pick<MountEntry, 'target' | 'majorMinor'>): Promise<void> {
  const [major, minor] = mount.majorMinor.split(':').map(Number) as [number, number];
  await shutdownFilesystem(mount.target, 'no-flush', { dev: { major, minor } });
}
