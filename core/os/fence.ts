/**
 * Fencing a filesystem: the shutdown ioctl (FS_IOC_SHUTDOWN through the addon, block.ts) on
 * a mount point. After it every write to that filesystem fails with EIO, through open files
 * too, and it unmounts cleanly.
 *
 * The mode is 'flush' first (block.ts): the device is frozen, so every write in flight
 * finishes and every committed change reaches the disk before the shutdown, and a record
 * whose fsync returned is on disk whatever the timing. 'no-flush' alone is not enough: on
 * xfs an fsync racing the shutdown can return success for a change the aborted log then
 * drops (seen in test/integration/failover.test.ts: the writer was told a record was synced
 * that the next node did not find). Freezing waits for the storage, which a node that lost
 * its storage may never get back: past `flushWithinMs` a 'no-flush' shutdown is issued beside
 * the waiting one, which stops every write at once without waiting.
 */
import { shutdownFilesystem } from './block.js';
import type { MountEntry } from './mounts.js';

/** How long a fence waits for the flush before it shuts down without one. */
export const FENCE_FLUSH_WITHIN_MS = 1_000;

/**
 * Shuts down the filesystem of `mount` (an entry of this namespace's mount table, which the
 * caller found at a path of berth's). The device is checked too: if the path no longer has
 * that filesystem mounted, the call is refused instead of shutting down another one.
 * @example await shutdownMount(await findMount('/var/lib/berth/mounts/vol-1'));
 */
export async function shutdownMount(mount: Pick<MountEntry, 'target' | 'majorMinor'>, flushWithinMs = FENCE_FLUSH_WITHIN_MS): Promise<'flush' | 'no-flush'> {
  const [major, minor] = mount.majorMinor.split(':').map(Number) as [number, number];
  const opts = { dev: { major, minor } };
  const flushed = shutdownFilesystem(mount.target, 'flush', opts).then(() => 'flush' as const);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), flushWithinMs);
  });
  try {
    const first = await Promise.race([flushed, late]);
    if (first === 'flush') return first;
    // The flush still waits (it finishes or fails on its own; nothing waits for it now).
    flushed.catch(() => undefined);
    await shutdownFilesystem(mount.target, 'no-flush', opts);
    return 'no-flush';
  } finally {
    clearTimeout(timer);
  }
}
