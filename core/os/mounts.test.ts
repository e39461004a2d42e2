// Mount table parsing (fixtures) and the mount commands against real tmpfs mounts under a
// per-test root (the machine is root); the root is swept even when a test fails.
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { leftovers, sweep } from '../../test/helpers/cleanup.js';
import { createExec } from './exec.js';
import {
  bindMount, bindSourceOf, findMount, isMountpoint, mount, mountStack, ownBind, parseMountInfo, readMountInfo, unmount, unmountAll, unmountBind,
} from './mounts.js';

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
      id: 98, parentId: 22, majorMinor: '7:3', root: '/', target: '/var/lib/berth/mounts/vol-a', options: ['rw', 'relatime'],
      fsType: 'xfs', source: '/dev/loop3', superOptions: ['rw', 'nouuid'],
    });
    expect(m[2]).toMatchObject({ root: '/data', target: '/srv/with space\ttab', source: 'tmp\\fs' });
  });
});

// /t: a tmpfs that was there first (46), berth's bind of /src/d (47), a copy of it stacked by
// a crash between two binds (48), and someone else's bind on top (50). /other/t: a chain
// hidden under a later mount of /other (61 covers 60 and the /other/t mount 62 under it).
const STACK = [
  '26 1 254:0 / / rw - ext4 /dev/vda rw',
  '23 26 0:6 / /dev rw - devtmpfs devtmpfs rw',
  '46 26 0:40 / /t rw - tmpfs t rw',
  '49 26 0:41 / /lo rw - tmpfs x rw',
  '50 48 0:41 /data /t rw - tmpfs x rw',
  '47 46 254:0 /src/d /t rw - ext4 /dev/vda rw',
  '48 47 254:0 /src/d /t rw - ext4 /dev/vda rw',
  '60 26 0:50 / /other rw - tmpfs a rw',
  '62 60 0:51 / /other/t rw - tmpfs b rw',
  '61 60 0:52 / /other rw - tmpfs c rw',
  '63 61 0:53 / /other/t rw - tmpfs d rw',
].join('\n');

describe('which mount at a target is berth\'s (pure, mountinfo fixtures)', () => {
  const table = parseMountInfo(STACK);
  const ids = (es: readonly { id: number }[]) => es.map((e) => e.id);
  const bind = { id: 47, majorMinor: '254:0', root: '/src/d' };

  it('orders a stack bottom first by parent links, whatever the table order', () => {
    expect(ids(mountStack(table, '/t'))).toEqual([46, 47, 48, 50]);
    expect(ids(mountStack(table, '/lo'))).toEqual([49]);
    expect(ids(mountStack(table, '/nothing'))).toEqual([]);
    expect(ids(mountStack(table, '/other'))).toEqual([60, 61]);
    expect(ids(mountStack(table, '/other/t'))).toEqual([63]); // 62 is hidden under 61
  });

  it('says what a bind of a path shows: the holding mount and the path inside its filesystem', () => {
    expect(bindSourceOf(table, '/src/d')).toEqual({ majorMinor: '254:0', root: '/src/d' });
    expect(bindSourceOf(table, '/lo/data')).toEqual({ majorMinor: '0:41', root: '/data' });
    expect(bindSourceOf(table, '/lo')).toEqual({ majorMinor: '0:41', root: '/' });
    expect(bindSourceOf(table, '/dev/loop3')).toEqual({ majorMinor: '0:6', root: '/loop3' });
    expect(bindSourceOf(table, '/lot/x')).toEqual({ majorMinor: '254:0', root: '/lot/x' }); // not inside /lo
    expect(bindSourceOf(table, '/other/x')).toEqual({ majorMinor: '0:52', root: '/x' }); // the top of /other
    // A bind of a path inside a bind mount shows the path inside the filesystem's root.
    expect(bindSourceOf(table, '/t/sub')).toEqual({ majorMinor: '0:41', root: '/data/sub' });
  });

  it('finds the recorded bind and its duplicates, and reports a foreign mount on top', () => {
    expect(ownBind(mountStack(table, '/t'), { mount: bind, source: null })).toEqual({ count: 0, coveredBy: expect.objectContaining({ id: 50 }) });
    const below = mountStack(table, '/t').slice(0, 3); // without the foreign bind on top
    expect(ownBind(below, { mount: bind, source: null })).toEqual({ count: 2, coveredBy: null });
    expect(ownBind(below, { mount: { ...bind, id: 48 }, source: null })).toEqual({ count: 1, coveredBy: null });
    // Gone (or the id now belongs to another mount): nothing of berth's is there...
    expect(ownBind(below, { mount: { ...bind, id: 99 }, source: null })).toEqual({ count: 0, coveredBy: null });
    expect(ownBind(below, { mount: { ...bind, id: 46 }, source: null })).toEqual({ count: 0, coveredBy: null });
    // ...except binds on top that show the source (a re-bind whose record a crash lost).
    expect(ownBind(below, { mount: { ...bind, id: 99 }, source: { majorMinor: '254:0', root: '/src/d' } })).toEqual({ count: 2, coveredBy: null });
    // Never the tmpfs that was there first, whatever is asked.
    expect(ownBind(below.slice(0, 1), { mount: bind, source: { majorMinor: '254:0', root: '/src/d' } })).toEqual({ count: 0, coveredBy: null });
  });

  it('without a record, takes only the mounts on top that show the source', () => {
    const src = { majorMinor: '254:0', root: '/src/d' };
    const all = mountStack(table, '/t');
    expect(ownBind(all.slice(0, 3), { mount: null, source: src })).toEqual({ count: 2, coveredBy: null });
    expect(ownBind(all, { mount: null, source: src })).toEqual({ count: 0, coveredBy: expect.objectContaining({ id: 48 }) });
    expect(ownBind(all.slice(0, 1), { mount: null, source: src })).toEqual({ count: 0, coveredBy: null });
    expect(ownBind(all, { mount: null, source: null })).toEqual({ count: 0, coveredBy: null });
  });

  it('agrees with the kernel: a real bind shows what bindSourceOf predicted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-mounts-id-'));
    try {
      mkdirSync(join(dir, 'src'));
      mkdirSync(join(dir, 'dst'));
      await bindMount(createExec(), join(dir, 'src'), join(dir, 'dst'));
      const t = await readMountInfo();
      const top = mountStack(t, join(dir, 'dst')).at(-1)!;
      expect({ majorMinor: top.majorMinor, root: top.root }).toEqual(bindSourceOf(t, join(dir, 'src')));
    } finally {
      sweep(dir);
      rmSync(dir, { recursive: true, force: true });
    }
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
