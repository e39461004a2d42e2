import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandSpec, Exec } from './exec.js';
import { CommandError } from './exec.js';
import { attachLoop, detachLoop, findLoopDevices, findLoopDevicesUnder, listLoopDevices, parseLosetupJson, readSysfsLoops } from './loop.js';

// util-linux 2.38 (this machine): JSON booleans and numbers.
const NEW_FORMAT = `{
   "loopdevices": [
      {"name": "/dev/loop0", "sizelimit": 0, "offset": 0, "autoclear": false, "ro": false, "back-file": "/var/lib/berth/backends/fast/vol-a.img", "dio": false, "log-sec": 512},
      {"name": "/dev/loop7", "sizelimit": 1048576, "offset": 4096, "autoclear": true, "ro": true, "back-file": "/srv/images/with space.img (deleted)", "dio": true, "log-sec": 4096}
   ]
}`;
// util-linux 2.34 printed booleans and numbers as strings.
const OLD_FORMAT = `{
   "loopdevices": [
      {"name": "/dev/loop3", "sizelimit": "0", "offset": "0", "autoclear": "1", "ro": "0", "back-file": "/x/vol-b.img", "dio": "0", "log-sec": "512"}
   ]
}`;
const NO_DEVICES = `{
   "loopdevices": [

   ]
}`;

/** An Exec double that answers from a table and records argv. */
function fakeExec(answer: (cmd: CommandSpec) => { stdout?: string; fail?: string }): Exec & { calls: CommandSpec[] } {
  const calls: CommandSpec[] = [];
  const exec = (async (cmd: CommandSpec) => {
    calls.push(cmd);
    const a = answer(cmd);
    if (a.fail !== undefined) throw new CommandError(cmd.bin, cmd.args, 1, null, false, a.fail);
    return { stdout: a.stdout ?? '', stderr: '', exitCode: 0 };
  }) as Exec & { calls: CommandSpec[] };
  exec.calls = calls;
  return exec;
}

describe('parseLosetupJson', () => {
  it('parses current util-linux output, stripping " (deleted)"', () => {
    expect(parseLosetupJson(NEW_FORMAT)).toEqual([
      { name: '/dev/loop0', backFile: '/var/lib/berth/backends/fast/vol-a.img', deleted: false, offset: 0, sizeLimit: 0, readOnly: false, autoclear: false, directIo: false },
      { name: '/dev/loop7', backFile: '/srv/images/with space.img', deleted: true, offset: 4096, sizeLimit: 1048576, readOnly: true, autoclear: true, directIo: true },
    ]);
  });
  it('parses the older string-typed output', () => {
    expect(parseLosetupJson(OLD_FORMAT)).toEqual([
      { name: '/dev/loop3', backFile: '/x/vol-b.img', deleted: false, offset: 0, sizeLimit: 0, readOnly: false, autoclear: true, directIo: false },
    ]);
  });
  it('treats an empty list or empty output as no devices', () => {
    expect(parseLosetupJson(NO_DEVICES)).toEqual([]);
    expect(parseLosetupJson('')).toEqual([]);
  });
});

describe('losetup commands', () => {
  it('attaches with --find --show --nooverlap and the image as one argv element', async () => {
    const exec = fakeExec(() => ({ stdout: '/dev/loop4\n' }));
    expect(await attachLoop(exec, '/r/vol a.img')).toBe('/dev/loop4');
    expect(exec.calls[0]).toMatchObject({ bin: 'losetup', args: ['--find', '--show', '--nooverlap', '--', '/r/vol a.img'] });
  });
  it('maps a missing image to NotFound and no free device to ResourceExhausted', async () => {
    await expect(attachLoop(fakeExec(() => ({ fail: 'losetup: /r/x.img: failed to set up loop device: No such file or directory' })), '/r/x.img')).rejects.toMatchObject({ kind: 'NotFound' });
    await expect(attachLoop(fakeExec(() => ({ fail: 'losetup: cannot find an unused loop device: could not find any free loop device' })), '/r/x.img')).rejects.toMatchObject({ kind: 'ResourceExhausted' });
  });
  it('treats detaching a device that is gone as success', async () => {
    await expect(detachLoop(fakeExec(() => ({ fail: 'losetup: /dev/loop5: detach failed: No such device or address' })), '/dev/loop5')).resolves.toBeUndefined();
    await expect(detachLoop(fakeExec(() => ({ fail: 'losetup: /dev/loop5: detach failed: Permission denied' })), '/dev/loop5')).rejects.toMatchObject({ kind: 'Internal' });
  });
});

describe('loop devices from sysfs', () => {
  let sys: string;
  beforeAll(async () => {
    sys = await mkdtemp(join(tmpdir(), 'berth-sysfs-'));
    const dev = async (name: string, attrs: Record<string, string> | null, ro = '0\n') => {
      await mkdir(join(sys, name, 'loop'), { recursive: true });
      await writeFile(join(sys, name, 'ro'), ro);
      if (!attrs) return void (await rm(join(sys, name, 'loop'), { recursive: true }));
      for (const [k, v] of Object.entries(attrs)) await writeFile(join(sys, name, 'loop', k), v);
    };
    await dev('loop0', { backing_file: '/var/lib/berth/backends/fast/vol-a.img\n', offset: '0\n', sizelimit: '0\n', autoclear: '0\n', dio: '0\n' });
    await dev('loop10', { backing_file: '/var/lib/berth/backends/fast/vol-b.img (deleted)\n', offset: '0\n', sizelimit: '0\n', autoclear: '1\n', dio: '1\n' }, '1\n');
    await dev('loop2', null); // present but not attached
    await mkdir(join(sys, 'vda'));
  });
  afterAll(() => rm(sys, { recursive: true, force: true }));

  it('lists attached devices in numeric order with their flags', async () => {
    expect(await readSysfsLoops(sys)).toEqual([
      { name: '/dev/loop0', backFile: '/var/lib/berth/backends/fast/vol-a.img', deleted: false, offset: 0, sizeLimit: 0, readOnly: false, autoclear: false, directIo: false },
      { name: '/dev/loop10', backFile: '/var/lib/berth/backends/fast/vol-b.img', deleted: true, offset: 0, sizeLimit: 0, readOnly: true, autoclear: true, directIo: true },
    ]);
  });
  it('finds devices under a directory by path prefix, not by substring, without a process', async () => {
    const exec = fakeExec(() => ({ fail: 'must not run' }));
    expect((await findLoopDevicesUnder(exec, '/var/lib/berth/backends/fast', { sysBlock: sys })).map((d) => d.name)).toEqual(['/dev/loop0', '/dev/loop10']);
    expect(await findLoopDevicesUnder(exec, '/var/lib/berth/backends/fa', { sysBlock: sys })).toEqual([]);
    expect((await findLoopDevices(exec, '/var/lib/berth/backends/fast/vol-b.img', { sysBlock: sys }))[0]?.deleted).toBe(true);
    expect(exec.calls).toEqual([]);
  });
  it('falls back to losetup --json when sysfs cannot be read', async () => {
    const exec = fakeExec(() => ({ stdout: NEW_FORMAT }));
    expect((await listLoopDevices(exec, { sysBlock: join(sys, 'missing') })).map((d) => d.name)).toEqual(['/dev/loop0', '/dev/loop7']);
    expect(exec.calls[0]).toMatchObject({ bin: 'losetup', args: ['--json', '--list'] });
  });
});
