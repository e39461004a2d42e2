// Units of the CLI's human-readable output: sizes for reading (backend ls, stats) and uptime (status).
import { describe, expect, it } from 'vitest';
import { formatBytes, humanBytes } from './output.js';
import { uptime } from './commands/status.js';

describe('humanBytes', () => {
  it('shows the largest unit with one decimal when not exact, never a five-digit KiB count', () => {
    expect(humanBytes(81945816 * 1024)).toBe('78.1GiB');
    expect(humanBytes(64 * 2 ** 20)).toBe('64MiB');
    expect(humanBytes(15360)).toBe('15KiB');
    expect(humanBytes(57381888)).toBe('54.7MiB');
    expect(humanBytes(900)).toBe('900B');
    expect(humanBytes(0)).toBe('0B');
    // formatBytes stays exact (it is pasted back into --size).
    expect(formatBytes(81945816 * 1024)).toBe('81945816KiB');
  });
});

describe('uptime', () => {
  const start = '2026-01-01T00:00:00.000Z';
  const at = (s: number) => Date.parse(start) + s * 1000;
  it('reads as seconds, minutes, hours or days', () => {
    expect(uptime(start, at(12))).toBe('12s');
    expect(uptime(start, at(4 * 60 + 5))).toBe('4m 05s');
    expect(uptime(start, at(3 * 3600 + 12 * 60))).toBe('3h 12m');
    expect(uptime(start, at(2 * 86400 + 3600))).toBe('2d 1h');
    expect(uptime(start, at(-5))).toBe('0s'); // clock skew between client and daemon
  });
});
