import { describe, expect, it } from 'vitest';
import { BerthError } from './errors.js';
import { KeyedMutex } from './locks.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('KeyedMutex', () => {
  it('serializes 50 concurrent acquirers of one key in FIFO order', async () => {
    const m = new KeyedMutex(10_000);
    const order: number[] = [];
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        m.run('k', async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          order.push(i);
          await tick();
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(m.size).toBe(0);
  });

  it('runs different keys in parallel', async () => {
    const m = new KeyedMutex(10_000);
    const ra = await m.acquire('a');
    const rb = await m.acquire('b'); // would hang if keys shared one lock
    expect(m.isHeld('a') && m.isHeld('b')).toBe(true);
    ra();
    rb();
    expect(m.size).toBe(0);
  });

  it('wait:false gets Busy at once while held, and the lock still works after', async () => {
    const m = new KeyedMutex(10_000);
    const r = await m.acquire('k');
    await expect(m.acquire('k', { wait: false })).rejects.toMatchObject({ kind: 'Busy' });
    r();
    const r2 = await m.acquire('k', { wait: false });
    r2();
  });

  it('bounded wait ends in Busy and the timed-out waiter never gets the lock', async () => {
    const m = new KeyedMutex(30);
    const r = await m.acquire('k');
    const waiting = m.acquire('k');
    const after = m.acquire('k', { waitMs: 10_000 });
    const err = await waiting.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('Busy');
    r();
    const r3 = await after; // skips the cancelled waiter
    expect(m.isHeld('k')).toBe(true);
    r3();
    expect(m.isHeld('k')).toBe(false);
  });

  it('a double release does not admit two holders', async () => {
    const m = new KeyedMutex(10_000);
    const r1 = await m.acquire('k');
    const p2 = m.acquire('k');
    const p3 = m.acquire('k');
    r1();
    r1();
    const r2 = await p2;
    let third = false;
    void p3.then(() => (third = true));
    await tick();
    expect(third).toBe(false);
    r2();
    (await p3)();
  });

  it('acquireAll takes keys in sorted order so opposite orders cannot deadlock', async () => {
    const m = new KeyedMutex(1_000);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (async () => {
          const release = await m.acquireAll(i % 2 ? ['x', 'y'] : ['y', 'x']);
          await tick();
          release();
          return i;
        })(),
      ),
    );
    expect(results).toHaveLength(20);
    expect(m.size).toBe(0);
  });
});
