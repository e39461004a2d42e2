// Pid files that outlive their program (test/helpers/dockerd.ts): a session's processes are
// killed when it ends, and its dockerd's pid file may then name some other live process.
// Stand-ins only: pid files under a temporary root, naming a `sleep` this test starts.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { livePid, removeStalePidFile } from './dockerd.js';
import { useTmpRoots } from './tmp-root.js';

const roots = useTmpRoots();
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await once(c, 'exit');
    }
  }
});

async function sleeper(): Promise<number> {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(c);
  await once(c, 'spawn');
  return c.pid!;
}

describe('pid files of the shared dockerd', () => {
  it('a pid file names its program only while that pid runs that program', async () => {
    const root = await roots.create('pidfile');
    const file = root.path('x.pid');
    const pid = await sleeper();
    await writeFile(file, `${pid}\n`);
    expect(await livePid(file, 'sleep')).toBe(pid);
    // The same live pid, another program: what a recycled pid looks like.
    expect(await livePid(file, 'dockerd')).toBe(0);
    children[0]!.kill('SIGKILL');
    await once(children[0]!, 'exit');
    expect(await livePid(file, 'sleep')).toBe(0);
    await writeFile(file, 'not a pid\n');
    expect(await livePid(file, 'sleep')).toBe(0);
    expect(await livePid(root.path('absent.pid'), 'sleep')).toBe(0);
  });

  it('removes a pid file naming another program, keeps one naming its own', async () => {
    const root = await roots.create('pidfile');
    const file = root.path('x.pid');
    const pid = await sleeper();
    await writeFile(file, `${pid}\n`);
    expect(await removeStalePidFile(file, 'sleep')).toBe(false);
    expect((await readFile(file, 'utf8')).trim()).toBe(String(pid));
    expect(await removeStalePidFile(file, 'dockerd')).toBe(true);
    await expect(readFile(file, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await removeStalePidFile(file, 'dockerd')).toBe(false);
  });
});
