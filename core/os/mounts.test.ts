// Mount table parsing (fixtures) and the mount commands against real tmpfs mounts under a
// per-test root (the machine is root); the root is swept even when a test fails.
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { leftovers, sweep } from '../../test/helpers/cleanup.js';
import { createExec } from './exec.js';
import { bindMount, findMount, isMountpoint, mount, parseMountInfo, unmount, unmountAll, unmountBind } from './mounts.js';

const FIXTURE = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '98 22 7:3 / /var/lib/berth/mounts/vol-a rw,relatime shared:50 - xfs /dev/loop3 rw,nouuid',
  '99 22 0:45 /data /srv/with\\040space\\011tab rw - tmpfs tmp\\134fs rw,size=1024k',
  'garbage line without separator',
  '',
].join('\n');

describe('parseMountInfo', () => {
  it('reads ids, root, target, options, type, source, undoing the kernel escapes', () => {
    const m = parseMountInfo(FIXTURE);
    expect(m).toHaveLength(3);
    expect(m[1]).toEqual({
      id: 98, parentId: 22, root: '/', target: '/var/lib/berth/mounts/vol-a', options: ['rw', 'relatime'],
      fsType: 'xfs', source: '/dev/loop3', superOptions: ['rw', 'nouuid'],
    });
    expect(m[2]).toMatchObject({ root: '/data', target: '/srv/with space\ttab', source: 'tmp\\fs' });
  });
});

describe('mount commands (real tmpfs)', () => {
  const exec = createExec();
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'berth-mounts-'));
  });
  afterEach(() => {
    sweep(root);
    rmSync(root, { recursive: true, force: true });
  });

  it('mounts, binds read-only, finds the topmost mount and unmounts idempotently', async () => {
    const src = join(root, 'src');
    const dst = join(root, 'dst');
    mkdirSync(src);
    mkdirSync(dst);
    await mount(exec, 'tmpfs', src, { fsType: 'tmpfs', options: ['size=1m'] });
    writeFileSync(join(src, 'f'), 'x');
    await bindMount(exec, src, dst, { readOnly: true });
    expect(await findMount(dst)).toMatchObject({ fsType: 'tmpfs', options: expect.arrayContaining(['ro']) });
    expect(() => writeFileSync(join(dst, 'g'), 'y')).toThrow(/EROFS|read-only/i);
    await unmount(exec, dst);
    await unmount(exec, dst); // not mounted: fine
    expect(await isMountpoint(dst)).toBe(false);
    await unmount(exec, src);
    expect(leftovers(root)).toEqual({ mounts: [], loops: [] });
  });

  it('unmountAll takes down stacked mounts; a busy one is InUse', async () => {
    const dir = join(root, 'stacked');
    mkdirSync(dir);
    for (let i = 0; i < 3; i++) await mount(exec, 'tmpfs', dir, { fsType: 'tmpfs', options: ['size=1m'] });
    await unmountAll(exec, dir);
    expect(await isMountpoint(dir)).toBe(false);
    await unmountAll(exec, dir); // nothing mounted: no-op

    await mount(exec, 'tmpfs', dir, { fsType: 'tmpfs', options: ['size=1m'] });
    const fd = openSync(join(dir, 'held'), 'w');
    try {
      await expect(unmountAll(exec, dir)).rejects.toMatchObject({ kind: 'InUse' });
      expect(await isMountpoint(dir)).toBe(true);
    } finally {
      closeSync(fd);
    }
    await unmountAll(exec, dir);
    expect(leftovers(root)).toEqual({ mounts: [], loops: [] });
  });

  it('unmountBind of a busy bind target is InUse, and works once it is free', async () => {
    const src = join(root, 'src');
    const dst = join(root, 'dst');
    mkdirSync(src);
    mkdirSync(dst);
    await bindMount(exec, src, dst);
    const fd = openSync(join(dst, 'held'), 'w');
    try {
      await expect(unmountBind(exec, dst)).rejects.toMatchObject({ kind: 'InUse' });
      expect(await isMountpoint(dst)).toBe(true);
    } finally {
      closeSync(fd);
    }
    await unmountBind(exec, dst);
    expect(leftovers(root)).toEqual({ mounts: [], loops: [] });
  });
});
