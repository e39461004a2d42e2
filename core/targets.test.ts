// Consumer targets with real bind mounts (the machine is root): the service with a fake
// backend whose volume data are real directories / files under a temporary root.
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../backends/fake/harness.js';
import { LOOP_LIKE } from '../backends/fake/fake.js';
import { findLeftovers, sweepRoot } from '../test/helpers/cleanup.js';
import { bindMount, findMount, isMountpoint, mountDepth } from './os/mounts.js';
import { createExec } from './os/exec.js';
import { mkdir } from 'node:fs/promises';
import type { OpContext } from './service.js';
import { parseMountFlags, unbindTarget, validateTarget } from './targets.js';

const ctx: OpContext = { frontend: 'csi' };

describe('validateTarget / parseMountFlags', () => {
  it('accepts absolute normalized paths and strips a trailing slash', () => {
    expect(validateTarget('/var/lib/kubelet/pods/x/mount')).toBe('/var/lib/kubelet/pods/x/mount');
    expect(validateTarget('/a/b/')).toBe('/a/b');
  });
  it.each(['', 'rel', '/a/../b', '/a/./b', '/a//b', '/', '/a\0b'])('refuses %j naming the field', (t) => {
    expect(() => validateTarget(t)).toThrow(expect.objectContaining({ kind: 'InvalidArgument', field: 'target' }));
  });
  it('splits flags and refuses unknown ones', () => {
    expect(parseMountFlags(['ro,noatime', 'nodev'])).toEqual({ readOnly: true, extra: ['noatime', 'nodev'] });
    expect(parseMountFlags(undefined)).toEqual({ readOnly: false, extra: [] });
    expect(() => parseMountFlags(['rw', 'suid'])).toThrow(expect.objectContaining({ field: 'mountFlags[1]' }));
  });
});

describe('mount with a target (real bind mounts)', () => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await createFakeHarness({ backends: { local: { capabilities: LOOP_LIKE } } });
  });
  afterEach(async () => {
    try {
      await h.svc.close().catch(() => undefined);
      const left = await findLeftovers(h.root);
      await sweepRoot(h.root);
      expect(left, 'the test left bind mounts behind').toEqual({ mounts: [], loops: [] });
    } finally {
      await h.cleanup();
    }
  });

  it('creates the target, bind-mounts the volume there, and unmount removes both', async () => {
    await h.svc.create({ name: 't' }, ctx);
    const target = join(h.root, 'pods', 'p1', 'mount');
    const m = await h.svc.mount({ ref: 't', consumer: `csi:${target}`, target }, ctx);
    expect(m.path).toBe(target);
    expect(m.volume.mounts).toMatchObject([{ target }]);
    expect(await isMountpoint(target)).toBe(true);
    await writeFile(join(target, 'hello'), 'world');
    expect(await readFile(join(m.volume.path!, 'hello'), 'utf8')).toBe('world');
    // Idempotent: same consumer again stacks nothing.
    const again = await h.svc.mount({ ref: 't', consumer: `csi:${target}`, target }, ctx);
    expect(again.existing).toBe(true);
    await h.svc.unmount({ ref: 't', consumer: `csi:${target}` }, ctx);
    expect(await isMountpoint(target)).toBe(false);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
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
  });

  it('reconcile re-binds a target that vanished (reboot) and unbinds a pending one', async () => {
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
    expect(await isMountpoint(t1)).toBe(true);
    expect(await isMountpoint(t2)).toBe(false);
    expect((await h.svc.inspect('rb', ctx)).mounts.map((m) => m.consumer)).toEqual(['csi:keep']);
    await h.svc.remove({ ref: 'rb', force: true }, ctx);
    expect(await isMountpoint(t1)).toBe(false);
  });

  it('unbindTarget takes down mounts stacked at the target by a crash between two binds, then removes it', async () => {
    const exec = createExec();
    const src = join(h.root, 'stack-src');
    const target = join(h.root, 'stack-target');
    await mkdir(src);
    await mkdir(target);
    await bindMount(exec, src, target);
    await bindMount(exec, src, target, { flags: ['nosuid'] });
    expect(await mountDepth(target)).toBe(2);
    expect((await findMount(target))?.options).toContain('nosuid');
    await unbindTarget(exec, target);
    expect(await mountDepth(target)).toBe(0);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
    await unbindTarget(exec, target); // idempotent: nothing left to do
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
