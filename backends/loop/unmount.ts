/**
 * Unmounting a managed mount point until nothing is mounted there (a crash between two
 * mounts can leave one stacked on another), with "target is busy" reported as InUse.
 */
import { CommandError, type Exec } from '../../core/os/exec.js';
import { findMount } from '../../core/os/mounts.js';
import { inUse, internal } from '../../core/errors.js';

const UMOUNT_TIMEOUT_MS = 60_000;
/** More stacked mounts than this at one managed path is a bug, not a state to converge from. */
const MAX_STACKED = 8;

export async function unmountAll(exec: Exec, target: string): Promise<void> {
  for (let i = 0; i < MAX_STACKED; i++) {
    if (!(await findMount(target))) return;
    try {
      await exec({ bin: 'umount', args: ['--', target], timeoutMs: UMOUNT_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof CommandError && /busy/i.test(err.stderrTail)) {
        throw inUse(`${target} is busy: a process still uses it`);
      }
      if (err instanceof CommandError && /not mounted/i.test(err.stderrTail)) continue;
      throw internal(`unmounting ${target} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }
  throw internal(`${target} still has mounts after ${MAX_STACKED} unmounts`);
}
