/**
 * A temporary root per test plus a cleanup stack that runs even when the test fails.
 *
 *   const roots = useTmpRoots();              // in the describe/file: registers afterEach
 *   const root = await roots.create('cli');   // in a test: /tmp/berth-cli-XXXX
 *   root.defer(() => something.stop());      // runs first, last-in first-out
 *
 * cleanup() runs the deferred steps, then sweeps the kernel (cleanup.ts): every mount under
 * the root is unmounted (deepest first), every loop device whose backing file is under the
 * root is detached, and the directory (sockets included) is removed. `leftovers()` tells a
 * test what the code under test left behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { createCleanupStack, sweep } from './cleanup.js';

export { leftovers, type Leftovers } from './cleanup.js';

export interface TmpRoot {
  /** Absolute path of the root directory. */
  readonly dir: string;
  /** join(dir, ...parts). */
  path(...parts: string[]): string;
  /** Registers a cleanup step (runs before the kernel sweep, LIFO). */
  defer(fn: () => unknown): void;
  /** Runs deferred steps and the sweep; safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * Creates a root now; the caller must call cleanup() (prefer useTmpRoots()).
 * @example const root = createTmpRoot('bench'); try { ... } finally { await root.cleanup(); }
 */
export function createTmpRoot(label = 'test'): TmpRoot {
  const dir = mkdtempSync(join(tmpdir(), `berth-${label.replace(/[^A-Za-z0-9_-]/g, '-')}-`));
  const steps = createCleanupStack();
  let done = false;
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    defer: (fn) => steps.defer(`${label} step`, fn),
    async cleanup() {
      if (done) return;
      done = true;
      try {
        await steps.run();
      } finally {
        sweep(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Per-test roots with automatic cleanup after each test, failed or not.
 * @example const roots = useTmpRoots(); it('x', async () => { const root = roots.create('x'); });
 */
export function useTmpRoots(): { create(label?: string): TmpRoot } {
  const live: TmpRoot[] = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    for (const r of live.splice(0).reverse()) await r.cleanup().catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  });
  return {
    create(label) {
      const r = createTmpRoot(label);
      live.push(r);
      return r;
    },
  };
}
