// Machine-wide test locks (machine-lock.ts): exclusive and shared modes, event-driven waits,
// and release by the kernel when the holder is killed (no stale lock to take over).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireAny, acquireLock, TEST_RUN_DIR, tryLock } from './machine-lock.js';

const used: string[] = [];
const unique = (l: string) => {
  const n = `unit-${l}-${randomBytes(4).toString('hex')}`;
  used.push(n);
  return n;
};
// Names of this run only, released by now: their files can go.
afterAll(() => {
  for (const n of used) rmSync(join(TEST_RUN_DIR, 'locks', n), { force: true });
});

describe('machine locks', () => {
  it('exclusive: one holder at a time, free again after release', async () => {
    const name = unique('x');
    const a = await tryLock(name);
    expect(a).not.toBeNull();
    expect(await tryLock(name)).toBeNull();
    await a!.release();
    const b = await tryLock(name);
    expect(b).not.toBeNull();
    await b!.release();
  });

  it('shared holders exclude an exclusive one until the last lets go', async () => {
    const name = unique('s');
    const [s1, s2] = [await tryLock(name, { shared: true }), await tryLock(name, { shared: true })];
    expect(s1 && s2).toBeTruthy();
    expect(await tryLock(name)).toBeNull();
    await s1!.release();
    expect(await tryLock(name)).toBeNull();
    await s2!.release();
    const x = await tryLock(name);
    expect(x).not.toBeNull();
    await x!.release();
  });

  it('acquireAny waits for whichever name is released first; acquireLock times out', async () => {
    const [n1, n2] = [unique('a'), unique('b')];
    const [h1, h2] = [await tryLock(n1), await tryLock(n2)];
    const got = acquireAny([n1, n2], 30_000);
    await h2!.release();
    const l = await got;
    expect(l.name).toBe(n2);
    await expect(acquireLock(n1, 200)).rejects.toThrow(/timed out after 200 ms/);
    await h1!.release();
    await l.release();
    // The waiter on n1 that lost gave up: n1 is free.
    const again = await tryLock(n1);
    expect(again).not.toBeNull();
    await again!.release();
  });

  it('a holder killed with SIGKILL holds nothing', async () => {
    const name = unique('k');
    const holder = spawn(process.execPath, ['--import', 'tsx', '-e',
      `import('${new URL('./machine-lock.ts', import.meta.url).pathname}').then(async (m) => { await m.tryLock('${name}'); console.log('held'); setInterval(() => {}, 1000); })`],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => holder.stdout!.once('data', () => r()));
    expect(await tryLock(name)).toBeNull();
    const exited = new Promise((r) => holder.once('exit', r));
    holder.kill('SIGKILL');
    await exited;
    const l = await acquireLock(name, 10_000); // the kernel drops it once the holder's pipe closes
    await l.release();
  });
});
