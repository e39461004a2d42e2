// Mount table parsing (fixtures) and the mount system calls against real tmpfs, bind and
// loop ext4 mounts under a per-test root (the machine is root); the root is swept even when
// a test fails. Each errno berth maps is produced for real here (ENOSPC / ENOMEM: sys-errors.test.ts).
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { leftovers, sweep } from '../../test/helpers/cleanup.js';
import { useTmpRoots, type TmpRoot } from '../../test/helpers/tmp-root.js';
import { clearBlockDeviceReadOnly, setBlockDeviceReadOnly } from './block.js';
import { attachLoop } from './loop.js';
import { createExec } from './exec.js';
import {
  bindMount, bindMountCreating, bindSourceOf, findMount, isMountpoint, mount, mountStack, ownBind, parseMountInfo, readMountInfo, unmount, unmountAll, unmountBind,
  unmountBindRemoving,
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

describe('mount system calls: each errno as a typed error naming the operation (real mounts under the test root)', () => {
  const exec = createExec();
  const roots = useTmpRoots();
  /** A 16 MiB ext4 image attached to a loop device (detached again by the root's sweep). */
  const ext4Device = async (root: TmpRoot, mkfs = true): Promise<string> => {
    const img = root.path(`fs-${Math.random().toString(36).slice(2)}.img`);
    writeFileSync(img, '');
    truncateSync(img, 16 * 2 ** 20);
    if (mkfs) execFileSync('mkfs.ext4', ['-q', '-F', img]);
    return attachLoop(exec, img);
  };
  const dirs = (root: TmpRoot, ...names: string[]) => names.map((n) => { mkdirSync(root.path(n)); return root.path(n); });

  it('bind flags apply before the bind shows; the source keeps its own; a plain bind is rw', async () => {
    const root = roots.create('bindflags');
    const [src, ro, plain] = dirs(root, 'src', 'ro', 'plain');
    await bindMount(exec, src!, ro!, { readOnly: true, flags: ['nosuid', 'nodev', 'noexec', 'noatime', 'nodiratime'] });
    await bindMount(exec, src!, plain!);
    expect((await findMount(ro!))?.options).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev', 'noexec', 'noatime', 'nodiratime']));
    expect((await findMount(plain!))?.options).toContain('rw');
    expect(() => writeFileSync(join(ro!, 'f'), 'x')).toThrow(/EROFS/);
    await bindMount(exec, src!, ro!, { flags: ['strictatime'] }); // stacked on the first: the atime mode is replaced
    expect((await findMount(ro!))?.options).not.toContain('noatime');
    await unmountAll(exec, ro!);
    await unmountAll(exec, plain!);
    expect(leftovers(root.dir).mounts).toEqual([]);
  });

  it('ENOENT: a missing bind source or mount target is NotFound naming the missing path', async () => {
    const root = roots.create('enoent');
    const [dst] = dirs(root, 'dst');
    await expect(bindMount(exec, root.path('gone'), dst!)).rejects.toMatchObject({
      kind: 'NotFound', message: `bind-mounting ${root.path('gone')} on ${dst} failed: ${root.path('gone')} does not exist (ENOENT from open_tree)`,
    });
    await expect(bindMount(exec, dst!, root.path('nowhere'), { readOnly: true })).rejects.toMatchObject({
      kind: 'NotFound', message: expect.stringContaining(`${root.path('nowhere')} does not exist (ENOENT from openat2 the target (no symbolic links))`),
    });
    await expect(mount(exec, 'scratch', root.path('nowhere'), { fsType: 'tmpfs' })).rejects.toMatchObject({ kind: 'NotFound', message: expect.stringContaining(`mounting scratch (tmpfs) at ${root.path('nowhere')} failed: ${root.path('nowhere')} does not exist`) });
  });

  it('ELOOP: a target that is or passes through a symbolic link is refused by the kernel, the link never followed', async () => {
    const root = roots.create('eloop');
    const [src, real] = dirs(root, 'src', 'real');
    mkdirSync(join(real!, 'sub'));
    symlinkSync(real!, root.path('link'));
    for (const target of [root.path('link'), join(root.path('link'), 'sub')]) {
      for (const readOnly of [false, true]) {
        await expect(bindMount(exec, src!, target, { readOnly })).rejects.toMatchObject({
          kind: 'InvalidArgument', field: 'target', message: expect.stringContaining(`"${target}" passes through a symbolic link; berth mounts only on real paths (ELOOP from openat2 the target`),
        });
      }
    }
    expect(leftovers(root.dir).mounts).toEqual([]);
  });

  it('bindMountCreating makes a missing target and binds it in one call, never through a link; anything unusual is null with nothing left', async () => {
    const root = roots.create('bindcreate');
    const [src, kube, real] = dirs(root, 'src', 'kube', 'real');
    writeFileSync(join(src!, 'data'), 'x');
    // Missing: made and bound, with the flags.
    const made = join(kube!, 'made');
    expect(await bindMountCreating(src!, made, { readOnly: true, file: false })).toEqual({ created: true });
    expect((await findMount(made))?.options).toContain('ro');
    expect(readFileSync(join(made, 'data'), 'utf8')).toBe('x');
    // There already (kubelet made it): bound, not made.
    const [there] = dirs(root, 'kube/there');
    expect(await bindMountCreating(src!, there!, { file: false })).toEqual({ created: false });
    expect(await isMountpoint(there!)).toBe(true);
    // A block target: an empty 0600 file made and bound over by a file.
    writeFileSync(root.path('dev'), 'block');
    const file = join(kube!, 'dev');
    expect(await bindMountCreating(root.path('dev'), file, { file: true })).toEqual({ created: true });
    expect(readFileSync(file, 'utf8')).toBe('block');
    // Refused: a link at or above the target, a missing parent, a target of the other kind, a
    // missing source (made, then taken back). Nothing is made anywhere.
    symlinkSync(real!, join(kube!, 'link'));
    symlinkSync(join(real!, 'dangling'), join(kube!, 'dangling'));
    writeFileSync(join(kube!, 'afile'), '');
    for (const [source, target, asFile] of [
      [src!, join(kube!, 'link'), false], [src!, join(kube!, 'link', 'sub'), false], [src!, join(kube!, 'dangling'), false],
      [src!, join(kube!, 'dangling'), true], [src!, join(kube!, 'no', 'sub'), false], [src!, join(kube!, 'afile'), false],
      [src!, there!, true], [root.path('gone'), join(kube!, 'fresh'), false],
    ] as const) {
      expect(await bindMountCreating(source, target, { file: asFile }), target).toBeNull();
    }
    expect(readdirSync(real!)).toEqual([]);
    expect(existsSync(join(kube!, 'no'))).toBe(false);
    expect(existsSync(join(kube!, 'fresh'))).toBe(false);
    for (const t of [made, there!, file]) await unmountAll(exec, t);
    expect(leftovers(root.dir).mounts).toEqual([]);
  });

  it('unmountBindRemoving unmounts and takes away an empty target directory or file, and nothing else', async () => {
    const root = roots.create('umountremove');
    const [src, emptyDir, fullDir] = dirs(root, 'src', 'empty', 'full');
    writeFileSync(join(fullDir!, 'kept'), 'under the mount');
    writeFileSync(root.path('dev'), 'block');
    writeFileSync(root.path('file'), '');
    for (const t of [emptyDir!, fullDir!]) await bindMount(exec, src!, t);
    await bindMount(exec, root.path('dev'), root.path('file'));
    expect(await unmountBindRemoving(emptyDir!)).toBe(true);
    expect(existsSync(emptyDir!)).toBe(false);
    expect(await unmountBindRemoving(fullDir!)).toBe(false);
    expect(readFileSync(join(fullDir!, 'kept'), 'utf8')).toBe('under the mount');
    expect(await unmountBindRemoving(root.path('file'))).toBe(true);
    expect(existsSync(root.path('file'))).toBe(false);
    expect(existsSync(src!)).toBe(true);
    // Not a mount point: nothing unmounted, nothing removed.
    await expect(unmountBindRemoving(fullDir!)).rejects.toMatchObject({ kind: 'Internal', message: expect.stringContaining('not a mount point (EINVAL from umount2)') });
    expect(existsSync(fullDir!)).toBe(true);
    expect(leftovers(root.dir).mounts).toEqual([]);
  });

  it('EBUSY: unmounting a target a process still uses is InUse naming it', async () => {
    const root = roots.create('ebusy');
    const [src, dst] = dirs(root, 'src', 'dst');
    await bindMount(exec, src!, dst!);
    const fd = openSync(join(dst!, 'held'), 'w');
    try {
      await expect(unmountAll(exec, dst!)).rejects.toMatchObject({ kind: 'InUse', message: `unmounting ${dst} failed: target is busy: a process still uses it (EBUSY from umount2)` });
    } finally {
      closeSync(fd);
    }
    await unmountAll(exec, dst!);
  });

  it('EINVAL: not a mount point, and no filesystem on the device, with mount(8)-like hints', async () => {
    const root = roots.create('einval');
    const [dir] = dirs(root, 'dir');
    await expect(unmountBind(exec, dir!)).rejects.toMatchObject({ kind: 'Internal', message: `unmounting ${dir} failed: not a mount point (EINVAL from umount2)` });
    const empty = await ext4Device(root, false);
    await expect(mount(exec, empty, dir!, { fsType: 'ext4' })).rejects.toMatchObject({
      kind: 'Internal', message: expect.stringContaining(`mounting ${empty} (ext4) at ${dir} failed: invalid argument: wrong fs type, bad option or bad superblock on ${empty}`),
    });
    expect(await isMountpoint(dir!)).toBe(false);
  });

  it('EACCES: a read-write mount of a write-protected device is FailedPrecondition naming the device; read-only works', async () => {
    const root = roots.create('eacces');
    const [dir] = dirs(root, 'dir');
    const dev = await ext4Device(root);
    await setBlockDeviceReadOnly(dev, true);
    await expect(mount(exec, dev, dir!, { fsType: 'ext4' })).rejects.toMatchObject({
      kind: 'FailedPrecondition', message: expect.stringMatching(new RegExp(`^mounting ${dev} \\(ext4\\) at ${dir} failed: ${dev} is write-protected .*\\((EACCES|EROFS) from mount\\)$`)),
    });
    await mount(exec, dev, dir!, { fsType: 'ext4', options: ['ro'] });
    expect((await findMount(dir!))?.options).toContain('ro');
    await unmountAll(exec, dir!);
    expect(await clearBlockDeviceReadOnly(dev)).toBe(true);
    await mount(exec, dev, dir!, { fsType: 'ext4', options: ['noatime'] });
    expect((await findMount(dir!))?.options).toEqual(expect.arrayContaining(['rw', 'noatime']));
    await unmountAll(exec, dir!);
  });

  it('ENOTBLK: a regular file is not mounted as a filesystem', async () => {
    const root = roots.create('enotblk');
    const [dir] = dirs(root, 'dir');
    const file = root.path('plain.img');
    writeFileSync(file, 'x');
    await expect(mount(exec, file, dir!, { fsType: 'ext4' })).rejects.toMatchObject({ kind: 'Internal', message: expect.stringContaining(`${file} is not a block device (ENOTBLK from mount)`) });
  });

  it('EPERM: without CAP_SYS_ADMIN the bind is refused, naming what and why', async () => {
    const root = roots.create('eperm');
    const [src, dst] = dirs(root, 'src', 'dst');
    // A child without CAP_SYS_ADMIN in its bounding set (root's capabilities are recomputed at exec).
    const script = `const { bindMount } = await import(${JSON.stringify(join(import.meta.dirname, 'mounts.ts'))});
      await bindMount(null, ${JSON.stringify(src)}, ${JSON.stringify(dst)}).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ kind: e.kind, message: e.message })));`;
    const out = execFileSync('setpriv', ['--bounding-set=-sys_admin', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({
      kind: 'Internal',
      message: `bind-mounting ${src} on ${dst} failed: refused: operation not permitted (berth needs root with CAP_SYS_ADMIN in the host mount namespace) (EPERM from mount (bind))`,
    });
    expect(await isMountpoint(dst!)).toBe(false);
  });

  it('refuses filesystems, options and flags berth does not pass, naming the field, before any system call', async () => {
    const root = roots.create('refuse');
    const [dir] = dirs(root, 'dir');
    await expect(mount(exec, '/dev/loop0', dir!, { fsType: 'nfs' })).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'fsType' });
    await expect(mount(exec, '/dev/loop0', dir!, { fsType: 'ext4', options: ['nouuid'] })).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'options' });
    await expect(mount(exec, '/dev/loop0', dir!, { fsType: 'xfs', options: ['nouuid,dax'] })).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'options' });
    await expect(mount(exec, 'dev/loop0', dir!, { fsType: 'xfs' })).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'source' });
    await expect(bindMount(exec, dir!, dir!, { flags: ['suid'] })).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'mountFlags' });
    await expect(bindMount(exec, dir!, 'rel/target')).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    await expect(unmountBind(exec, `${dir}\0x`)).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    expect(await isMountpoint(dir!)).toBe(false);
  });
});
