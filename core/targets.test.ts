// Consumer targets with real bind mounts (the machine is root): the service with a fake
// backend whose volume data are real directories / files under a temporary root. Every
// "foreign" mount (a tmpfs that was there first, one stacked on berth's) and every symlink
// is a stand-in under that root; system paths are only ever checked, never touched.
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, useCatalogs } from '../test/fake/catalogs.js';
import { findLeftovers, sweepRoot } from '../test/helpers/cleanup.js';
import { bindMount, findMount, isMountpoint, mount, mountStack, readMountInfo, unmount, unmountBind } from './os/mounts.js';
import { createExec, type Exec } from './os/exec.js';
import type { OpContext } from './service.js';
import { bindTarget, checkNoSymlinks, parseMountFlags, unbindTarget } from './targets.js';

const ctx: OpContext = { frontend: 'admin' };
const catalogs = useCatalogs();
const depth = async (target: string) => mountStack(await readMountInfo(), target).length;

describe('parseMountFlags', () => {
  it('splits flags and refuses unknown ones', () => {
    expect(parseMountFlags(['ro,noatime', 'nodev'])).toEqual({ readOnly: true, extra: ['noatime', 'nodev'] });
    expect(parseMountFlags(undefined)).toEqual({ readOnly: false, extra: [] });
    expect(() => parseMountFlags(['rw', 'suid'])).toThrow(expect.objectContaining({ field: 'mountFlags[1]' }));
  });
});

describe.each(CATALOGS)('mount with a target (real bind mounts, %s catalog)', (kind) => {
  let h: FakeHarness;
  /** Every command the core ran (mount, umount), to prove a refusal ran none. */
  let commands: string[];
  beforeEach(async () => {
    commands = [];
    const real = createExec();
    const exec: Exec = (spec) => {
      commands.push([spec.bin, ...(spec.args ?? [])].join(' '));
      return real(spec);
    };
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } }, exec });
  });
  afterEach(async () => {
    try {
      await h.svc.close().catch(() => undefined);
      const left = await findLeftovers(h.root);
      await sweepRoot(h.root);
      expect(left, 'the test left mounts behind').toEqual({ mounts: [], loops: [] });
    } finally {
      await h.cleanup();
    }
  });

  /** A tmpfs with a file in it at `dir`: a mount berth did not make. */
  const foreignTmpfs = async (dir: string, content = 'precious') => {
    await mkdir(dir, { recursive: true });
    await mount(createExec(), 'tmpfs', dir, { fsType: 'tmpfs', options: ['size=1m'] });
    await writeFile(join(dir, 'f'), content);
  };

  it('creates the target, bind-mounts the volume there, and unmount removes both', async () => {
    await h.svc.create({ name: 't' }, ctx);
    const target = join(h.root, 'pods', 'p1', 'mount');
    const m = await h.svc.mount({ ref: 't', consumer: `csi:${target}`, target }, ctx);
    expect(m.path).toBe(target);
    expect(m.volume.mounts).toMatchObject([{ target }]);
    expect(await isMountpoint(target)).toBe(true);
    await writeFile(join(target, 'hello'), 'world');
    expect(await readFile(join(m.volume.path!, 'hello'), 'utf8')).toBe('world');
    // What berth made is on record: the target it created and the mount, as the kernel names it.
    const [ref] = h.store.listMountRefs(m.volume.id);
    const top = (await findMount(target))!;
    expect(ref).toMatchObject({ targetCreated: true, bindSource: m.volume.path, bindMount: { id: top.id, majorMinor: top.majorMinor, root: top.root } });
    // Idempotent: same consumer again stacks nothing.
    const again = await h.svc.mount({ ref: 't', consumer: `csi:${target}`, target }, ctx);
    expect(again.existing).toBe(true);
    expect(await depth(target)).toBe(1);
    await h.svc.unmount({ ref: 't', consumer: `csi:${target}` }, ctx);
    expect(await isMountpoint(target)).toBe(false);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('issue 9 repro: a tmpfs that was at the target keeps its mount, its data and its directory', async () => {
    await h.svc.create({ name: 'v1' }, ctx);
    const premnt = join(h.root, 's', 'premnt');
    await foreignTmpfs(premnt);
    await h.svc.mount({ ref: 'v1', consumer: 'a', target: premnt }, ctx);
    expect(await depth(premnt)).toBe(2);
    expect(existsSync(join(premnt, 'f'))).toBe(false); // the volume covers it
    await h.svc.unmount({ ref: 'v1', consumer: 'a' }, ctx);
    expect(await findMount(premnt)).toMatchObject({ fsType: 'tmpfs' });
    expect(await depth(premnt)).toBe(1);
    expect(await readFile(join(premnt, 'f'), 'utf8')).toBe('precious');
    await unmount(createExec(), premnt);
    expect((await stat(premnt)).isDirectory()).toBe(true);
  });

  it('keeps a directory it did not create, and removes one it did', async () => {
    await h.svc.create({ name: 'keep' }, ctx);
    const existing = join(h.root, 'existing');
    await mkdir(existing);
    await h.svc.mount({ ref: 'keep', consumer: 'a', target: existing }, ctx);
    await h.svc.unmount({ ref: 'keep', consumer: 'a' }, ctx);
    expect((await stat(existing)).isDirectory()).toBe(true);
    const made = join(h.root, 'made');
    await h.svc.mount({ ref: 'keep', consumer: 'b', target: made }, ctx);
    await h.svc.unmount({ ref: 'keep', consumer: 'b' }, ctx);
    expect(existsSync(made)).toBe(false);
  });

  it('issue 9 repro: a symlink target, or one passing through a symlink, is refused and nothing is mounted', async () => {
    await h.svc.create({ name: 'v1' }, ctx);
    const victim = join(h.root, 's', 'victim');
    await mkdir(victim, { recursive: true });
    const sl = join(h.root, 's', 'sl');
    await symlink(victim, sl);
    await expect(h.svc.mount({ ref: 'v1', consumer: 's', target: sl }, ctx)).rejects.toMatchObject({
      kind: 'InvalidArgument', field: 'target', message: expect.stringMatching(/is a symbolic link/),
    });
    await expect(h.svc.mount({ ref: 'v1', consumer: 's', target: join(sl, 'sub') }, ctx)).rejects.toMatchObject({
      kind: 'InvalidArgument', field: 'target', message: expect.stringMatching(/passes through a symbolic link/),
    });
    // A dangling link on the way, and a loop.
    await symlink(join(h.root, 'nowhere'), join(h.root, 'dangling'));
    await expect(h.svc.mount({ ref: 'v1', consumer: 's', target: join(h.root, 'dangling', 'x') }, ctx)).rejects.toMatchObject({ field: 'target' });
    await symlink(join(h.root, 'loop'), join(h.root, 'loop'));
    await expect(h.svc.mount({ ref: 'v1', consumer: 's', target: join(h.root, 'loop', 'x') }, ctx)).rejects.toMatchObject({ field: 'target' });
    expect(await isMountpoint(victim)).toBe(false);
    expect(existsSync(join(h.root, 'nowhere'))).toBe(false);
    expect(commands.filter((c) => c.startsWith('mount'))).toEqual([]);
    expect(await h.svc.inspect('v1', ctx)).toMatchObject({ mounts: [], path: null });
  });

  it('refuses system paths, the state root and paths outside the allow-list before touching anything', async () => {
    await h.svc.create({ name: 'v' }, ctx);
    // Paths that cannot be created anyway, so even a broken check could not harm the host.
    for (const target of ['/proc/berth-test-never/x', '/sys/berth-test-never', '/proc', '/']) {
      await expect(h.svc.mount({ ref: 'v', consumer: 'c', target }, ctx)).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    }
    const inState = join(h.root, 'state', 'mounts', 'x');
    await expect(h.svc.mount({ ref: 'v', consumer: 'c', target: inState }, ctx))
      .rejects.toMatchObject({ field: 'target', message: expect.stringMatching(/state root/) });
    expect(existsSync(join(h.root, 'state', 'mounts'))).toBe(false);
    expect(commands).toEqual([]);
    expect(h.backend.calls.filter((c) => c.method === 'mount')).toEqual([]);
  });

  it('refuses a target outside targets.allowedPrefixes, naming the list', async () => {
    const other = await catalogs.harness(kind, { backends: { local: {} }, targetPrefixes: [] });
    try {
      await other.svc.create({ name: 'v' }, ctx);
      const target = join(other.root, 'mnt', 'x');
      await expect(other.svc.mount({ ref: 'v', consumer: 'c', target }, ctx)).rejects.toMatchObject({
        kind: 'InvalidArgument', field: 'target', message: expect.stringMatching(/not below an allowed target directory.*targets\.allowedPrefixes/),
      });
      expect(existsSync(join(other.root, 'mnt'))).toBe(false);
    } finally {
      await other.cleanup();
    }
  });

  it('refuses a target another reference uses, or one nested in or holding another', async () => {
    await h.svc.create({ name: 'a' }, ctx);
    await h.svc.create({ name: 'b' }, ctx);
    const t = join(h.root, 'mnt', 'a');
    await h.svc.mount({ ref: 'a', consumer: 'one', target: t }, ctx);
    for (const [ref, target, how] of [['a', t, /already the target of one/], ['b', t, /already the target of one/],
      ['b', join(t, 'in'), /inside the target of one/], ['b', join(h.root, 'mnt'), /holds the target of one/]] as const) {
      await expect(h.svc.mount({ ref, consumer: 'two', target }, ctx)).rejects.toMatchObject({ kind: 'InUse', field: 'target', message: expect.stringMatching(how) });
    }
    expect(await depth(t)).toBe(1);
    await h.svc.unmount({ ref: 'a', consumer: 'one' }, ctx);
  });

  it('never unmounts a mount berth did not make on top of its own: FailedPrecondition naming the target, reference kept', async () => {
    await h.svc.create({ name: 'cov' }, ctx);
    const target = join(h.root, 'covered');
    await h.svc.mount({ ref: 'cov', consumer: 'a', target }, ctx);
    await foreignTmpfs(target, 'on top');
    await expect(h.svc.unmount({ ref: 'cov', consumer: 'a' }, ctx)).rejects.toMatchObject({
      kind: 'FailedPrecondition', field: 'target', message: expect.stringMatching(/covered by a mount berth did not make \(tmpfs tmpfs/),
    });
    expect(await depth(target)).toBe(2);
    expect(await readFile(join(target, 'f'), 'utf8')).toBe('on top');
    expect((await h.svc.inspect('cov', ctx)).mounts).toMatchObject([{ consumer: 'a', target }]);
    // Once its owner takes it away, the unmount goes through.
    await unmountBind(createExec(), target);
    await h.svc.unmount({ ref: 'cov', consumer: 'a' }, ctx);
    expect(existsSync(target)).toBe(false);
  });

  it('read-only references get a read-only bind mount', async () => {
    await h.svc.create({ name: 'ro' }, ctx);
    const target = join(h.root, 'ro-target');
    await h.svc.mount({ ref: 'ro', consumer: 'csi:ro', target, readOnly: true, mountFlags: ['noexec'] }, ctx);
    const entry = await findMount(target);
    expect(entry?.options).toContain('ro');
    expect(entry?.options).toContain('noexec');
    await expect(writeFile(join(target, 'x'), 'y')).rejects.toMatchObject({ code: 'EROFS' });
    await h.svc.unmount({ ref: 'ro', consumer: 'csi:ro' }, ctx);
  });

  it('block volumes bind the device onto a file target', async () => {
    await h.svc.create({ name: 'blk', volumeMode: 'block' }, ctx);
    const target = join(h.root, 'pods', 'p2', 'dev', 'blk');
    const m = await h.svc.mount({ ref: 'blk', consumer: 'csi:blk', target }, ctx);
    expect(m.path).toBe(target);
    expect((await stat(target)).isFile()).toBe(true);
    expect(await isMountpoint(target)).toBe(true);
    await h.svc.unmount({ ref: 'blk', consumer: 'csi:blk' }, ctx);
    expect(await isMountpoint(target)).toBe(false);
    expect(existsSync(target)).toBe(false);
  });

  it('reconcile re-binds a target that vanished (reboot), records the new mount, and unbinds a pending one', async () => {
    const v = await h.svc.create({ name: 'rb' }, ctx);
    const t1 = join(h.root, 'keep');
    const t2 = join(h.root, 'pending');
    await h.svc.mount({ ref: 'rb', consumer: 'csi:keep', target: t1 }, ctx);
    await h.svc.mount({ ref: 'rb', consumer: 'csi:pending', target: t2 }, ctx);
    // The second mount "crashed" before its commit; the reboot took every mount away.
    h.store.setMountRefState(v.id, 'csi:pending', 'pending');
    await sweepRoot(h.root);
    expect(await isMountpoint(t1)).toBe(false);
    await h.restart();
    const top = await findMount(t1);
    expect(top).not.toBeNull();
    expect(await isMountpoint(t2)).toBe(false);
    expect(h.store.listMountRefs(v.id)).toMatchObject([{ consumer: 'csi:keep', bindMount: { id: top!.id, root: top!.root } }]);
    await h.svc.remove({ ref: 'rb', force: true }, ctx);
    expect(await isMountpoint(t1)).toBe(false);
    expect(existsSync(t1)).toBe(false);
  });

  it('crash between the bind and the record: reconcile removes exactly berth\'s bind (and its stacked copy), keeps what was under it, and keeps the directory it cannot prove it made', async () => {
    const v = await h.svc.create({ name: 'cr' }, ctx);
    const target = join(h.root, 'crash');
    await foreignTmpfs(target, 'under');
    const m = await h.svc.mount({ ref: 'cr', consumer: 'a', target }, ctx);
    // As a kill -9 right after the bind leaves it: pending, the source known, no mount on
    // record; a second bind of the same source stacked by a retry that also crashed.
    h.store.setMountRefState(v.id, 'a', 'pending');
    h.store.setMountRefBinding(v.id, 'a', { targetCreated: false, bindSource: m.volume.path, bindMount: null });
    await bindMount(createExec(), m.volume.path!, target);
    expect(await depth(target)).toBe(3);
    await h.restart();
    expect(await depth(target)).toBe(1);
    expect(await readFile(join(target, 'f'), 'utf8')).toBe('under');
    expect(h.store.listMountRefs(v.id)).toEqual([]);
    await unmount(createExec(), target);
    // No record that berth made it: a directory (here: the test's own) stays.
    const made = join(h.root, 'made-then-crash');
    await h.svc.mount({ ref: 'cr', consumer: 'b', target: made }, ctx);
    h.store.setMountRefState(v.id, 'b', 'pending');
    h.store.setMountRefBinding(v.id, 'b', { targetCreated: false, bindSource: m.volume.path, bindMount: null });
    await h.restart();
    expect(await isMountpoint(made)).toBe(false);
    expect((await stat(made)).isDirectory()).toBe(true);
  });

  it('crash with a foreign mount on top of berth\'s pending bind: reconcile unmounts nothing and keeps the reference', async () => {
    const v = await h.svc.create({ name: 'pc' }, ctx);
    const target = join(h.root, 'pending-covered');
    await h.svc.mount({ ref: 'pc', consumer: 'a', target }, ctx);
    h.store.setMountRefState(v.id, 'a', 'pending');
    await foreignTmpfs(target, 'mine');
    await h.restart();
    const report = await h.svc.reconcile();
    expect(report.errors).toEqual([{ volume: 'pc', message: expect.stringMatching(/covered by a mount berth did not make/) }]);
    expect(await depth(target)).toBe(2);
    expect(await readFile(join(target, 'f'), 'utf8')).toBe('mine');
    expect(h.store.listMountRefs(v.id)).toMatchObject([{ consumer: 'a', state: 'pending' }]);
    await unmountBind(createExec(), target);
    expect((await h.svc.reconcile()).pendingRefsDropped).toEqual(['pc/a']);
    expect(await isMountpoint(target)).toBe(false);
  });

  it('reconcile stacks nothing on a committed target that a foreign mount covers, and records a bind it recognises by its source', async () => {
    const v = await h.svc.create({ name: 'rc' }, ctx);
    const target = join(h.root, 'rc');
    const m = await h.svc.mount({ ref: 'rc', consumer: 'a', target }, ctx);
    // An older berth recorded no mount: reconcile finds it by what it shows, and records it.
    h.store.setMountRefBinding(v.id, 'a', { targetCreated: true, bindSource: m.volume.path, bindMount: null });
    await h.restart();
    const top = (await findMount(target))!;
    expect(h.store.listMountRefs(v.id)[0]).toMatchObject({ bindMount: { id: top.id } });
    await foreignTmpfs(target, 'x');
    const report = await h.svc.reconcile();
    expect(report.errors).toEqual([{ volume: 'rc', message: expect.stringMatching(/covered/) }]);
    expect(await depth(target)).toBe(2);
    await unmountBind(createExec(), target);
    await h.svc.unmount({ ref: 'rc', consumer: 'a' }, ctx);
  });

  it('unbindTarget takes down berth\'s bind and the copies a crash stacked on it, nothing below, and removes what it made', async () => {
    const exec = createExec();
    const src = join(h.root, 'stack-src');
    const target = join(h.root, 'stack-target');
    await mkdir(src);
    await foreignTmpfs(target);
    const bound = await bindTarget(exec, src, target, { readOnly: false, file: false });
    expect(bound.created).toBe(false);
    await bindMount(exec, src, target, { flags: ['nosuid'] });
    expect(await depth(target)).toBe(3);
    await unbindTarget(exec, { target, created: false, mount: bound.mount, source: src });
    expect(await depth(target)).toBe(1);
    expect(await readFile(join(target, 'f'), 'utf8')).toBe('precious');
    await unbindTarget(exec, { target, created: false, mount: bound.mount, source: src }); // idempotent
    expect(await depth(target)).toBe(1);
    await unmount(exec, target);
  });

  it('refuses to unmount through a path that became a symlink, and keeps the reference', async () => {
    await h.svc.create({ name: 'sw' }, ctx);
    const parent = join(h.root, 'swap');
    const target = join(parent, 't');
    await h.svc.mount({ ref: 'sw', consumer: 'a', target }, ctx);
    expect(await checkNoSymlinks(target)).toBe('directory');
    // Someone moves the directory away and puts a symlink to elsewhere in its place.
    const { rename } = await import('node:fs/promises');
    await rename(parent, `${parent}-moved`);
    await mkdir(join(h.root, 'elsewhere', 't'), { recursive: true });
    await symlink(join(h.root, 'elsewhere'), parent);
    await expect(h.svc.unmount({ ref: 'sw', consumer: 'a' }, ctx)).rejects.toMatchObject({ kind: 'FailedPrecondition', field: 'target' });
    expect((await h.svc.inspect('sw', ctx)).mounts).toHaveLength(1);
    expect(await isMountpoint(`${parent}-moved/t`)).toBe(true);
    await unmountBind(createExec(), `${parent}-moved/t`);
  });

  it('a target that cannot be bound rolls the whole mount back', async () => {
    const v = await h.svc.create({ name: 'bad' }, ctx);
    const file = join(h.root, 'a-file');
    await writeFile(file, 'not a dir');
    await expect(h.svc.mount({ ref: 'bad', consumer: 'c', target: file }, ctx)).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    expect(await h.svc.inspect('bad', ctx)).toMatchObject({ mounts: [], attachments: [], path: null });
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
  });
});
