/**
 * The one table of built-in backend drivers: driver name (the config's `driver:`) -> the
 * driver (its factory and the programs it runs). The composition root passes it to
 * createBackends(); tests may add "fake".
 */
import type { BackendDriver } from '../core/backend.js';
import { btrfsDriver } from './btrfs/btrfs.js';
import { dirDriver } from './dir/dir.js';
import { loopDriver } from './loop/loop.js';

export const builtinDrivers: Record<string, BackendDriver> = {
  dir: dirDriver,
  loop: loopDriver,
  btrfs: btrfsDriver,
};
