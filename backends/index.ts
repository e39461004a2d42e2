/**
 * The one table of built-in backend drivers: driver name (the config's `driver:`) ->
 * factory. The composition root passes it to createBackends(); tests may add "fake".
 */
import type { BackendFactory } from '../core/backend.js';
import { createBtrfsBackend } from './btrfs/btrfs.js';
import { createDirBackend } from './dir/dir.js';
import { createLoopBackend } from './loop/loop.js';

export const builtinDrivers: Record<string, BackendFactory> = {
  dir: createDirBackend,
  loop: createLoopBackend,
  btrfs: createBtrfsBackend,
};
