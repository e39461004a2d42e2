/**
 * Room for the records that must follow a side effect, on the filesystem holding the state
 * database.
 *
 * An operation changes the kernel first and records it after (unmount, detach, remove) or
 * records an intent, acts, then commits (create, mount). On a full filesystem the write
 * after the side effect is the one that fails, leaving a record that no longer says what
 * the kernel has. So the store keeps a reserve file of RESERVE_BYTES next to the database:
 * - a write that fails with SQLITE_FULL releases it (unlink) and is retried once;
 * - an operation that takes new resources (create, mount, attach, expand, snapshot) first
 *   calls ensureHeadroom(): it re-creates a released reserve and wants as much again
 *   available, else it is refused with ResourceExhausted before anything changes.
 * Operations that free resources (unmount, detach, remove) never ask: on a full disk they
 * still run, and the reserve pays for their records.
 */
import { closeSync, fsyncSync, openSync, statfsSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { resourceExhausted } from '../errors.js';
import { formatSize } from '../spec.js';
import type { Logger } from '../log.js';

/**
 * 1 MiB: a record is a few WAL frames (4 KiB pages); a WAL that has not yet reached its
 * checkpoint size grows by at most that much per commit. Hundreds of records fit.
 */
export const RESERVE_BYTES = 1024 * 1024;

export interface SpaceReserve {
  /** Whether the reserve file is in place. */
  readonly held: boolean;
  /** Frees the reserve; true when there was one to free. */
  release(): boolean;
  /** Re-creates a released reserve and wants RESERVE_BYTES available besides; ResourceExhausted otherwise. */
  ensureHeadroom(): void;
}

/**
 * @example const reserve = createSpaceReserve('/var/lib/berth/state.db.reserve', { log }); reserve.ensureHeadroom();
 */
export function createSpaceReserve(file: string, o: { bytes?: number; log?: Logger } = {}): SpaceReserve {
  const bytes = o.bytes ?? RESERVE_BYTES;
  const dir = dirname(file);
  const available = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  const full = (free: number) =>
    resourceExhausted(`the filesystem holding the state root ${dir} is full (${free} bytes available; berth starts nothing it could not record with less than ${formatSize(2 * bytes)}): free space there`);

  /** Writes the whole reserve (allocated, not sparse) or nothing. */
  const create = (): boolean => {
    let fd: number | null = null;
    try {
      fd = openSync(file, 'w', 0o600);
      const chunk = Buffer.alloc(64 * 1024);
      for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
      fsyncSync(fd);
      return true;
    } catch {
      try {
        unlinkSync(file);
      } catch {
        /* never created */
      }
      return false;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  };

  /** A reserve left by the last run is kept as it is: rewriting it on a full disk could lose it. */
  const kept = () => {
    const st = statSync(file, { throwIfNoEntry: false });
    return st !== undefined && st.isFile() && st.size >= bytes && st.blocks * 512 >= bytes;
  };
  let held = bytes > 0 && (kept() || create());
  if (bytes > 0 && !held) o.log?.warn({ file, bytes }, 'state root full: no space reserve for records yet (made once space is free)');

  return {
    get held() {
      return held;
    },
    release() {
      if (!held) return false;
      held = false;
      try {
        unlinkSync(file);
      } catch {
        /* already gone: nothing to free */
      }
      o.log?.warn({ file, bytes }, 'state root full: released the space reserve to write a record');
      return true;
    },
    ensureHeadroom() {
      if (bytes === 0) return;
      const free = available();
      if (!held) {
        if (free < 2 * bytes || !create()) throw full(free);
        held = true;
        o.log?.info({ file, bytes }, 'space reserve for records made again');
        return;
      }
      if (free < bytes) throw full(free);
    },
  };
}
