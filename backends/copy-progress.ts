/**
 * Progress of a copy made by a child process. Backends copy with `cp` (reflinks, sparse
 * files and ownership done right by the one tool that knows them all), and `cp` reports
 * nothing while it runs. So the progress a backend owes its caller (OpContext.onProgress,
 * shown as the CLI's progress bar) is measured from outside: the destination's allocated
 * bytes are polled while the copy runs and compared with the source's.
 *
 * Events keep three promises a renderer can rely on: the first is (0, total) as soon as the
 * copy starts, done bytes never go down and stay below total until the copy has finished,
 * and the last is (total, total) once it has. Nothing is reported after finish()/stop(),
 * even by a poll that was still in flight.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Progress } from '../core/backend.js';

/** How often a running copy is measured; the bar moves at about this rate. */
export const PROGRESS_EVERY_MS = 250;

export interface CopyWatch {
  /** The copy succeeded: reports (total, total) and stops polling. */
  finish(): void;
  /** The copy failed or was skipped: stops polling without a last event. */
  stop(): void;
}

/**
 * Starts reporting a copy's progress; a no-op watch when nobody listens.
 * @example const w = watchCopy({ total, measure: () => allocatedBytes(tmp), onProgress }); try { await cp(); w.finish(); } finally { w.stop(); }
 */
export function watchCopy(o: { total: number; measure: () => Promise<number>; onProgress?: Progress | undefined; everyMs?: number }): CopyWatch {
  const report = o.onProgress;
  if (!report) return { finish() {}, stop() {} };
  const total = Math.max(0, o.total);
  let done = 0;
  let active = true;
  let measuring = false;
  report(0, total);
  const timer = setInterval(() => {
    // A slow measurement (a big tree) must not pile up behind itself.
    if (measuring || !active) return;
    measuring = true;
    o.measure().then(
      (bytes) => {
        measuring = false;
        // Below total until finish(): a copy that has written everything may still be syncing or renaming.
        const next = Math.min(bytes, Math.max(total - 1, 0));
        if (active && next > done) {
          done = next;
          report(done, total);
        }
      },
      () => {
        measuring = false; // the destination may not exist yet; the next tick tries again
      },
    );
  }, o.everyMs ?? PROGRESS_EVERY_MS);
  const stop = () => {
    active = false;
    clearInterval(timer);
  };
  return {
    finish() {
      if (!active) return;
      stop();
      report(total, total);
    },
    stop,
  };
}

/** Allocated bytes of one file (what a sparse-aware copy has to move); 0 when it is missing. */
export async function allocatedFileBytes(path: string): Promise<number> {
  const st = await lstat(path).catch(() => null);
  return st ? Math.min(st.blocks * 512, st.size) : 0;
}

/**
 * Allocated bytes of the regular files under a directory (0 when it is missing). A walk
 * costs time in proportion to the number of files, so callers only measure when someone
 * asked for progress.
 */
export async function allocatedTreeBytes(dir: string): Promise<number> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let sum = 0;
  for (const name of names) {
    const st = await lstat(join(dir, name)).catch(() => null);
    if (st?.isFile()) sum += Math.min(st.blocks * 512, st.size);
  }
  return sum;
}
