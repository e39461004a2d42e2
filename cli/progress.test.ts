// The CLI's copy progress display without a daemon: which mode each output gets, the pipe
// format (one line per whole percent), an empty copy, and the bar on a pretend terminal.
import { describe, expect, it } from 'vitest';
import { createCopyProgress, humanBytes } from './progress.js';

const sink = (isTTY: boolean) => {
  const chunks: string[] = [];
  return { stream: { isTTY, write: (s: string) => (chunks.push(s), true) }, text: () => chunks.join('') };
};

describe('createCopyProgress', () => {
  it('asks for nothing with --output json or yaml', async () => {
    for (const output of ['json', 'yaml'] as const) {
      const s = sink(true);
      const p = await createCopyProgress({ output, label: 'cloning', stream: s.stream });
      expect(p.onProgress).toBeUndefined();
      p.stop();
      expect(s.text()).toBe('');
    }
  });

  it('writes one line per whole percent on a pipe', async () => {
    const s = sink(false);
    const p = await createCopyProgress({ output: 'table', label: 'cloning', stream: s.stream });
    const MiB = 2 ** 20;
    for (const done of [0, 0.001 * MiB, 0.5 * MiB, 0.501 * MiB, MiB]) p.onProgress!(done, MiB);
    p.stop();
    expect(s.text()).toBe(['cloning: 0% (0B of 1.0MiB)', 'cloning: 50% (512.0KiB of 1.0MiB)', 'cloning: 100% (1.0MiB of 1.0MiB)', ''].join('\n'));
  });

  it('an empty source is 100% at once', async () => {
    const s = sink(false);
    const p = await createCopyProgress({ output: 'table', label: 'restoring', stream: s.stream });
    p.onProgress!(0, 0);
    expect(s.text()).toBe('restoring: 100% (0B of 0B)\n');
  });

  it('draws a bar on a terminal and ends it on stop', async () => {
    const s = sink(true);
    const p = await createCopyProgress({ output: 'table', label: 'cloning', stream: { ...s.stream, cursorTo: () => true, clearLine: () => true, moveCursor: () => true } as never });
    p.onProgress!(0, 4 * 2 ** 30);
    p.onProgress!(4 * 2 ** 30, 4 * 2 ** 30);
    p.stop();
    p.stop();
    expect(s.text()).toMatch(/cloning \[=+\] 100% \| 4\.0GiB of 4\.0GiB/);
  });

  it('humanBytes rounds to one decimal of the largest unit', () => {
    expect(humanBytes(0)).toBe('0B');
    expect(humanBytes(1536)).toBe('1.5KiB');
    expect(humanBytes(66180 * 1024)).toBe('64.6MiB');
  });
});
