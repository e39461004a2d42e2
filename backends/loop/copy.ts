/**
 * Copies of loop images, for snapshots and clones: `cp --reflink=auto --sparse=always`
 * through the one Exec (an instant reflink where the filesystem holding the images has
 * them, e.g. xfs or btrfs; otherwise a copy that keeps holes), into a temporary name
 * renamed into place, so a crash never leaves a half copy under the final name.
 *
 * A mounted source is frozen (fsfreeze) for the copy, so the copy is a clean filesystem;
 * writers block meanwhile (for a reflink that is milliseconds). Block volumes cannot be
 * frozen by berth: their copy is crash-consistent, as after a power cut.
 */
import { rename, rm, stat } from 'node:fs/promises';
import type { Exec } from '../../core/os/exec.js';
import type { Progress } from '../../core/backend.js';
import { internal } from '../../core/errors.js';
import { findMount } from '../../core/os/mounts.js';
import { allocatedFileBytes, watchCopy } from '../copy-progress.js';

const COPY_TIMEOUT_MS = 3_600_000;
const FREEZE_TIMEOUT_MS = 60_000;

/**
 * Copies `src` to `dst` unless `dst` already exists (idempotent: a finished copy is kept).
 * `freeze` is the mount point to freeze during the copy, if the source is mounted.
 */
export async function copyImage(exec: Exec, src: string, dst: string, opts: { freeze: string | null; onProgress?: Progress }): Promise<void> {
  if (await stat(dst).then(() => true, () => false)) return;
  const tmp = `${dst}.partial`;
  await rm(tmp, { force: true });
  // cp reports nothing: the copy's allocated bytes are polled against the source's.
  const total = opts.onProgress ? await allocatedFileBytes(src) : 0;
  const watch = watchCopy({ total, measure: () => allocatedFileBytes(tmp), onProgress: opts.onProgress });
  const frozen = opts.freeze && (await findMount(opts.freeze)) ? opts.freeze : null;
  try {
    if (frozen) await exec({ bin: 'fsfreeze', args: ['--freeze', frozen], timeoutMs: FREEZE_TIMEOUT_MS });
    try {
      await exec({ bin: 'cp', args: ['--reflink=auto', '--sparse=always', '--', src, tmp], timeoutMs: COPY_TIMEOUT_MS });
    } finally {
      if (frozen) await exec({ bin: 'fsfreeze', args: ['--unfreeze', frozen], timeoutMs: FREEZE_TIMEOUT_MS });
    }
    await rename(tmp, dst);
    watch.finish();
  } catch (err) {
    await rm(tmp, { force: true });
    throw internal(`copying ${src} to ${dst} failed: ${err instanceof Error ? err.message : String(err)}`, err);
  } finally {
    watch.stop();
  }
}

/**
 * Thaws a filesystem a crashed copy may have left frozen. "Not frozen" is the normal
 * answer (fsfreeze exits non-zero), so every outcome is success.
 */
export async function thaw(exec: Exec, mountpoint: string): Promise<void> {
  await exec({ bin: 'fsfreeze', args: ['--unfreeze', mountpoint], timeoutMs: FREEZE_TIMEOUT_MS }).catch(() => undefined);
}
