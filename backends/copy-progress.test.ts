// Copy progress: the poller's promises (first 0, monotonic, below total until finish, last
// total, nothing after stop) with fake timers, then the real loop image copy and the real
// dir backend clone reporting through it with `cp` doing the work.
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSilentLogger } from '../core/log.js';
import { createExec } from '../core/os/exec.js';
import type { BackendVolume } from '../core/backend.js';
import { allocatedFileBytes, allocatedTreeBytes, watchCopy } from './copy-progress.js';
import { copyImage } from './loop/copy.js';
import { createDirBackend } from './dir/dir.js';

type Event = [done: number, total: number];

describe('watchCopy', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reports 0 at once, growing measurements below total while copying, then total once', async () => {
    vi.useFakeTimers();
    const events: Event[] = [];
    let copied = 0;
    const w = watchCopy({ total: 1000, measure: async () => copied, onProgress: (d, t) => events.push([d, t]), everyMs: 10 });
    expect(events).toEqual([[0, 1000]]);
    copied = 300;
    await vi.advanceTimersByTimeAsync(10);
    copied = 200; // a measurement that goes down (e.g. a re-created file) is not reported
    await vi.advanceTimersByTimeAsync(10);
    copied = 1000; // everything written but not yet renamed: still below total
    await vi.advanceTimersByTimeAsync(10);
    w.finish();
    copied = 5000;
    await vi.advanceTimersByTimeAsync(50);
    w.finish();
    expect(events).toEqual([[0, 1000], [300, 1000], [999, 1000], [1000, 1000]]);
  });

  it('skips ticks while a slow measurement runs and drops one that resolves after stop', async () => {
    vi.useFakeTimers();
    const events: Event[] = [];
    let calls = 0;
    let release: (n: number) => void = () => undefined;
    const w = watchCopy({
      total: 100,
      measure: () => {
        calls++;
        return new Promise<number>((r) => { release = r; });
      },
      onProgress: (d, t) => events.push([d, t]),
      everyMs: 10,
    });
    await vi.advanceTimersByTimeAsync(50);
    expect(calls).toBe(1);
    w.stop();
    release(50);
    await vi.advanceTimersByTimeAsync(50);
    expect(events).toEqual([[0, 100]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a failed measurement (destination not there yet) is retried, not reported', async () => {
    vi.useFakeTimers();
    const events: Event[] = [];
    let fail = true;
    const w = watchCopy({ total: 10, measure: async () => { if (fail) throw new Error('ENOENT'); return 4; }, onProgress: (d, t) => events.push([d, t]), everyMs: 10 });
    await vi.advanceTimersByTimeAsync(10);
    fail = false;
    await vi.advanceTimersByTimeAsync(10);
    w.finish();
    expect(events).toEqual([[0, 10], [4, 10], [10, 10]]);
  });

  it('is silent and sets no timer when nobody listens', () => {
    vi.useFakeTimers();
    const w = watchCopy({ total: 10, measure: async () => 5 });
    expect(vi.getTimerCount()).toBe(0);
    w.finish();
  });
});

/** Checks the promises a renderer relies on, on events from a real copy. */
function expectWellFormed(events: Event[], total: number): void {
  expect(events.length).toBeGreaterThanOrEqual(2);
  expect(events[0]).toEqual([0, total]);
  expect(events.at(-1)).toEqual([total, total]);
  for (let i = 1; i < events.length; i++) {
    expect(events[i]![1]).toBe(total);
    expect(events[i]![0]).toBeGreaterThanOrEqual(events[i - 1]![0]);
  }
  expect(events.filter(([d]) => d === total)).toHaveLength(1);
}

describe('real copies report progress', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('a loop image copy (cp --sparse) reports the written bytes of a sparse image', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-progress-loop-'));
    dirs.push(root);
    const src = join(root, 'src.img');
    // 1 GiB apparent size, 48 MiB written in three places: the copy moves only what is allocated.
    const fh = await open(src, 'w');
    const chunk = Buffer.alloc(16 * 2 ** 20, 0xab);
    for (const at of [0, 300 * 2 ** 20, 900 * 2 ** 20]) await fh.write(chunk, 0, chunk.length, at);
    await fh.truncate(2 ** 30);
    await fh.close();
    const total = await allocatedFileBytes(src);
    expect(total).toBeGreaterThanOrEqual(48 * 2 ** 20);
    expect(total).toBeLessThan(2 ** 30);

    const events: Event[] = [];
    await copyImage(createExec(), src, join(root, 'dst.img'), { freeze: null, onProgress: (d, t) => events.push([d, t]) });
    expectWellFormed(events, total);
    expect(await allocatedFileBytes(join(root, 'dst.img'))).toBeLessThan(2 ** 30); // still sparse

    // A copy that is already there is kept (idempotent) and reports nothing.
    const again: Event[] = [];
    await copyImage(createExec(), src, join(root, 'dst.img'), { freeze: null, onProgress: (d, t) => again.push([d, t]) });
    expect(again).toEqual([]);
  });

  it('a dir clone reports the allocated bytes of the tree it copies', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-progress-dir-'));
    dirs.push(root);
    const b = await createDirBackend({ name: 'local', settings: {}, stateRoot: root, node: 'test-node', exec: createExec(), log: createSilentLogger() });
    const vol = (id: string): BackendVolume => ({ id, name: id, sizeBytes: 0, fsType: null, volumeMode: 'filesystem', options: {} });
    const src = vol('vol-00000000000000000000000001');
    const dst = vol('vol-00000000000000000000000002');
    await b.create(src);
    const srcDir = join(root, 'backends', 'local', src.id);
    await mkdir(join(srcDir, 'a', 'b'), { recursive: true });
    await writeFile(join(srcDir, 'a', 'b', 'big'), Buffer.alloc(8 * 2 ** 20, 1));
    await writeFile(join(srcDir, 'small'), 'x');
    const total = await allocatedTreeBytes(srcDir);
    expect(total).toBeGreaterThanOrEqual(8 * 2 ** 20);

    const events: Event[] = [];
    await b.createFromVolume!(dst, src, (d, t) => events.push([d, t]));
    expectWellFormed(events, total);
    expect(await readFile(join(root, 'backends', 'local', dst.id, 'small'), 'utf8')).toBe('x');
  });
});
