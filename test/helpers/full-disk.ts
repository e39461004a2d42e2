/**
 * A filesystem that can be filled: a small ext4 image under a test root, loop-mounted (the
 * loop device clears itself on unmount; the root's sweep unmounts it), and a writer that
 * fills whatever filesystem holds a file.
 *
 *   mountSmallExt4(root, root.path('state'), 64);   // 64 MiB, no blocks reserved for root
 *   fillFilesystem(root.path('state', 'filler'));    // until ENOSPC
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import type { TmpRoot } from './tmp-root.js';

/** Makes a `mib` MiB ext4 image in `root` and mounts it at `dir` (created). */
export function mountSmallExt4(root: TmpRoot, dir: string, mib: number): void {
  const image = `${dir}.img`;
  execFileSync('truncate', ['-s', `${mib}M`, image]);
  // -m 0: no blocks reserved for root, so "full" is full for berth (root) too.
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image], { timeout: 60_000 });
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-o', 'loop', image, dir], { timeout: 60_000 });
  if (!image.startsWith(`${root.dir}/`)) throw new Error(`${image} must be under the test root for the sweep`);
}

/**
 * Appends to `file` until its filesystem is full (ENOSPC), down to 512-byte writes, then
 * syncs and goes on until a pass finds no room at all: blocks freed by a deletion and
 * space held back for delayed allocation only come back once the journal commits.
 * Returns bytes written.
 */
export function fillFilesystem(file: string): number {
  const fd = openSync(file, 'a');
  const chunk = Buffer.alloc(256 * 1024, 1);
  let written = 0;
  try {
    for (let pass = 0; pass < 10; pass++) {
      let thisPass = 0;
      for (let n = chunk.length; n >= 512; n >>= 1) {
        try {
          for (;;) thisPass += writeSync(fd, chunk, 0, n);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        }
      }
      written += thisPass;
      try {
        fsyncSync(fd);
      } catch {
        /* ENOSPC while writing back: the next pass sees what is left */
      }
      execFileSync('sync', ['-f', file], { timeout: 60_000, stdio: 'ignore' });
      if (pass > 0 && thisPass === 0) break;
    }
  } finally {
    closeSync(fd);
  }
  return written;
}
