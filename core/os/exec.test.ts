// The one process runner: the policy it enforces (allow-list, argv only, deadline) and
// the failures it reports, against real (allow-listed) programs.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandError, createExec } from './exec.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-exec-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a CommandError'); }, (e: unknown) => e as CommandError);

describe('createExec', () => {
  it('refuses a program that is not on the allow-list before anything runs', async () => {
    const exec = createExec();
    const e = await failure(exec({ bin: 'sh', args: ['-c', 'touch x'], timeoutMs: 5_000 }));
    expect(e).toBeInstanceOf(CommandError);
    expect(e.stderrTail).toMatch(/not on the allow-list/);
    const abs = await failure(exec({ bin: '/bin/cp', args: [], timeoutMs: 5_000 }));
    expect(abs.stderrTail).toMatch(/not on the allow-list/);
  });

  it('passes each argument as one argv element: shell syntax is just a file name', async () => {
    const name = 'a b; $(touch pwned) `touch pwned2` | x';
    await createExec()({ bin: 'truncate', args: ['-s', '0', '--', join(dir, name)], timeoutMs: 5_000 });
    expect(readdirSync(dir)).toEqual([name]);
  });

  it('reports the exit code and the stderr tail, and accepts listed okCodes', async () => {
    const exec = createExec();
    const e = await failure(exec({ bin: 'cp', args: ['--', join(dir, 'missing'), join(dir, 'x')], timeoutMs: 5_000 }));
    expect({ exitCode: e.exitCode, timedOut: e.timedOut, signal: e.signal }).toEqual({ exitCode: 1, timedOut: false, signal: null });
    expect(e.stderrTail).toMatch(/No such file/);
    expect(e.message).toMatch(/^cp -- .* exited with 1: /);
    const ok = await exec({ bin: 'cp', args: ['--', join(dir, 'missing'), join(dir, 'x')], timeoutMs: 5_000, okCodes: [0, 1] });
    expect(ok.exitCode).toBe(1);
  });

  it('kills a command at its deadline and says it timed out', async () => {
    const started = Date.now();
    // cp from /dev/zero to /dev/null never ends on its own.
    const e = await failure(createExec()({ bin: 'cp', args: ['/dev/zero', '/dev/null'], timeoutMs: 200 }));
    expect(e.timedOut).toBe(true);
    expect(e.message).toMatch(/timed out/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('stops a command when its AbortSignal fires', async () => {
    const ac = new AbortController();
    const p = failure(createExec()({ bin: 'cp', args: ['/dev/zero', '/dev/null'], timeoutMs: 60_000, signal: ac.signal }));
    ac.abort();
    const e = await p;
    expect(e).toBeInstanceOf(CommandError);
    expect(e.timedOut).toBe(false);
    expect(e.exitCode).toBeNull();
  });

  it('survives input a command never reads (EPIPE on stdin is not an uncaught error)', async () => {
    // sync exits without reading stdin; 8 MiB cannot fit in the pipe buffer.
    const r = await createExec()({ bin: 'sync', args: [], timeoutMs: 10_000, input: 'x'.repeat(8 << 20) });
    expect(r.exitCode).toBe(0);
    expect(existsSync(dir)).toBe(true);
  });

  it('tells the observer about every command with its outcome', async () => {
    const seen: Array<[string, boolean]> = [];
    const exec = createExec({ onCommand: (cmd, _ms, ok) => seen.push([cmd.bin, ok]) });
    await exec({ bin: 'sync', args: [], timeoutMs: 10_000 });
    await failure(exec({ bin: 'cp', args: [], timeoutMs: 10_000 }));
    expect(seen).toEqual([['sync', true], ['cp', false]]);
  });
});
