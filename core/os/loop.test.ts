import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandSpec, Exec } from './exec.js';
import { CommandError } from './exec.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../../test/helpers/tmp-root.js';
import { attachLoop, blockDeviceSize, detachLoop, findLoopDevices, findLoopDevicesUnder, listLoopDevices, parseLosetupJson, readSysfsLoops, refreshLoopCapacity } from './loop.js';

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

describe('loop devices with system calls (real images under a per-test root)', () => {
  const roots = useTmpRoots();
  const exec = fakeExec(() => ({ fail: 'no process may run' }));
  const image = async (root: TmpRoot, name: string, mib = 8) => {
    const p = root.path(name);
    await writeFile(p, '');
    await truncate(p, mib * 2 ** 20);
    return p;
  };
  const backing = (device: string) => readFileSync(`/sys/block/${device.slice(5)}/loop/backing_file`, 'utf8').trim();

  it('attaches without a process; concurrent attaches of one image give one device (no duplicate)', async () => {
    const root = roots.create('loop-once');
    const img = await image(root, 'a.img');
    const devices = await Promise.all(Array.from({ length: 8 }, () => attachLoop(exec, img)));
    expect(new Set(devices).size).toBe(1);
    expect(devices[0]).toMatch(/^\/dev\/loop\d+$/);
    expect(backing(devices[0]!)).toBe(img);
    expect((await findLoopDevices(exec, img)).map((d) => d.name)).toEqual([devices[0]]);
    expect(await attachLoop(exec, img)).toBe(devices[0]); // again, later: the same device
    await detachLoop(exec, devices[0]!);
    await detachLoop(exec, devices[0]!); // already detached: success
    expect(await findLoopDevices(exec, img)).toEqual([]);
    expect(exec.calls).toEqual([]);
  });

  it('gives concurrent attaches of different images distinct devices (another taker of a free device is retried)', async () => {
    const root = roots.create('loop-race');
    const imgs = await Promise.all(Array.from({ length: 6 }, (_, i) => image(root, `r${i}.img`, 4)));
    const devices = await Promise.all(imgs.map((img) => attachLoop(exec, img)));
    expect(new Set(devices).size).toBe(imgs.length);
    devices.forEach((d, i) => expect(backing(d)).toBe(imgs[i]));
    for (const d of devices) await detachLoop(exec, d);
  });

  it('attaches read-only with the image opened read-only', async () => {
    const root = roots.create('loop-ro');
    const img = await image(root, 'ro.img');
    const dev = await attachLoop(exec, img, { readOnly: true });
    expect(readFileSync(`/sys/block/${dev.slice(5)}/ro`, 'utf8').trim()).toBe('1');
    await detachLoop(exec, dev);
  });

  it('refreshes the capacity after the image grew (LOOP_SET_CAPACITY), and BLKGETSIZE64 sees it', async () => {
    const root = roots.create('loop-cap');
    const img = await image(root, 'g.img', 8);
    const dev = await attachLoop(exec, img);
    expect(await blockDeviceSize(dev)).toBe(8 * 2 ** 20);
    await truncate(img, 24 * 2 ** 20);
    await refreshLoopCapacity(exec, dev);
    expect(await blockDeviceSize(dev)).toBe(24 * 2 ** 20);
    await detachLoop(exec, dev);
    await expect(refreshLoopCapacity(exec, dev)).rejects.toMatchObject({ kind: 'NotFound', message: expect.stringContaining(`${dev} is not attached`) });
  });

  it('maps a missing image to NotFound and a directory to Internal, naming the image and the failing step', async () => {
    const root = roots.create('loop-err');
    await expect(attachLoop(exec, root.path('missing.img'))).rejects.toMatchObject({
      kind: 'NotFound', message: expect.stringContaining(`image ${root.path('missing.img')} does not exist (ENOENT from open the image)`),
    });
    await mkdir(root.path('dir.img'));
    await expect(attachLoop(exec, root.path('dir.img'))).rejects.toMatchObject({ kind: 'Internal', message: expect.stringMatching(/EISDIR|not a regular file/) });
    expect(leftovers(root.dir).loops).toEqual([]);
  });

  it('refuses bad arguments before any system call, naming the field', async () => {
    await expect(attachLoop(exec, 'relative.img')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'image' });
    await expect(attachLoop(exec, '/x/a\0.img')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'image' });
    await expect(detachLoop(exec, '/dev/sda')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'device' });
    await expect(detachLoop(exec, '/dev/loop1/../sda')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'device' });
    await expect(refreshLoopCapacity(exec, '/tmp/loop0')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'device' });
  });

  it('reports a file that is not a block device when its size is asked', async () => {
    const root = roots.create('loop-notblk');
    const img = await image(root, 'f.img', 1);
    await expect(blockDeviceSize(img)).rejects.toMatchObject({ kind: 'Internal', message: expect.stringContaining(`${img} is not a block device`) });
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
