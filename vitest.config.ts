import { defineConfig } from 'vitest/config';
import ImageLastSequencer from './test/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', '**/*.case.test.ts'],
    // Real mounts, loop devices, mkfs and dockerd are slow next to unit tests.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Integration suites share the kernel (loop devices, Docker): files run in parallel,
    // but each test uses its own temporary root and unique names.
    pool: 'forks',
    globalSetup: ['test/helpers/global-setup.ts'],
    // Suites that need the berth image last: it is built in the background meanwhile.
    sequence: { sequencer: ImageLastSequencer },
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
