import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createExec } from '../../core/os/exec.js';
import { createSilentLogger } from '../../core/log.js';
import { findMount } from '../../core/os/mounts.js';
import { listLoopDevices } from '../../core/os/loop.js';
import { probeFilesystem, readFsSize } from '../../core/os/fs.js';
import type { BackendVolume, CreateSpec } from '../../core/backend.js';
import type { FsType } from '../../core/types.js';
import { randomVolumeId, runBackendConformance } from '../../test/conformance/backend.case.js';
import { createCleanupStack, findLeftovers, sweepRoot, type CleanupStack } from '../../test/helpers/cleanup.js';
import { createLoopBackend, type LoopBackend } from './loop.js';
import { MAX_LOOP_BYTES } from './settings.js';


const MiB = 1024 * 1024;
/** The node these backends run as (BackendContext.node): attach and mount act for it. */
const NODE = 'test-node';
const REPO = fileURLToPath(new URL('../..', import.meta.url));

const ctx = (stateRoot: string, settings: Record<string, unknown> = {}) => ({
  name: 'fast',
  settings,
  stateRoot,
  node: NODE,
  exec: createExec(),
  log: createSilentLogger(),
});

// One conformance run per filesystem: mkfs, mount options and size limits differ.
for (const [fs, size] of [['ext4', 32 * MiB], ['xfs', 300 * MiB], ['btrfs', 128 * MiB]] as const) {
  runBackendConformance({
    name: `loop (${fs})`,
    makeBackend: async (root, node) => createLoopBackend({ ...ctx(root, { defaultFs: fs }), node }),
    volumeSize: size,
  });
}

describe('loop backend specifics', () => {
  let root: string;
  let stack: CleanupStack;
  let backend: LoopBackend;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-loop-'));
    stack = createCleanupStack();
    stack.defer('remove root', () => rm(root, { recursive: true, force: true }));
    stack.defer('sweep', async () => expect(await sweepRoot(root)).toEqual({ mounts: [], loops: [] }));
    backend = (await createLoopBackend(ctx(root))) as LoopBackend;
  });
  afterEach(async () => {
    await stack.run();
    expect(await findLeftovers(root)).toEqual({ mounts: [], loops: [] });
  });

  function volume(over: Partial<CreateSpec> = {}): BackendVolume {
    const spec = backend.validateCreate({ sizeBytes: 16 * MiB, fsType: null, volumeMode: 'filesystem', options: {}, ...over });
    const vol = { id: randomVolumeId(), name: 'x', ...spec };
    stack.defer(`teardown ${vol.id}`, async () => {
      await backend.unmount(vol);
      await backend.detach(vol);
      await backend.delete(vol);
    });
    return vol;
  }

  it('refuses a size past what its image can be as OutOfRange naming size, at validate time and on create/expand', async () => {
    const base = { fsType: null, volumeMode: 'filesystem' as const, options: {} };
    for (const sizeBytes of [Number.MAX_SAFE_INTEGER, MAX_LOOP_BYTES + 1]) {
      expect(() => backend.validateCreate({ ...base, sizeBytes })).toThrow(expect.objectContaining({ kind: 'OutOfRange', field: 'size' }));
      expect(() => backend.validateCreate({ ...base, volumeMode: 'block', sizeBytes })).toThrow(expect.objectContaining({ kind: 'OutOfRange', field: 'size' }));
    }
    expect(backend.validateCreate({ ...base, sizeBytes: MAX_LOOP_BYTES }).sizeBytes).toBe(MAX_LOOP_BYTES);
    const vol = volume();
    await backend.create(vol);
    // Before: a RangeError from rounding the image up to whole sectors, answered as Internal.
    await expect(backend.expand(vol, Number.MAX_SAFE_INTEGER, { mounted: false, device: null }))
      .rejects.toMatchObject({ kind: 'OutOfRange', field: 'size' });
    expect((await stat(backend.image(vol))).size).toBe(16 * MiB);
  });

  it('answers EFBIG from the filesystem holding the images as OutOfRange naming size', () => {
    // RLIMIT_FSIZE makes the kernel answer EFBIG past 1 MiB, as ext4 does past 16 TiB (Node
    // ignores SIGXFSZ), so the child's create of a 2 MiB volume meets exactly that answer.
    const script = `
      import { createLoopBackend } from './backends/loop/loop.ts';
      import { createExec } from './core/os/exec.ts';
      import { createSilentLogger } from './core/log.ts';
      const b = await createLoopBackend({ name: 'l', settings: {}, stateRoot: ${JSON.stringify(root)}, node: 'test-node', exec: createExec(), log: createSilentLogger() });
      const vol = { id: 'vol-01j0000000000000000000efbg', name: 'x', sizeBytes: 2 * 1024 * 1024, fsType: 'ext4', volumeMode: 'filesystem', options: {} };
      const grow = { ...vol, id: 'vol-01j0000000000000000000efbh', sizeBytes: 512 * 1024 };
      const out = {};
      await b.create(vol).then(() => (out.create = 'ok'), (e) => (out.create = { kind: e.kind, field: e.field, message: e.message }));
      await b.create(grow);
      await b.expand(grow, 4 * 1024 * 1024, { mounted: false, device: null }).then(() => (out.expand = 'ok'), (e) => (out.expand = { kind: e.kind, field: e.field }));
      console.log(JSON.stringify(out));`;
    const r = spawnSync('prlimit', ['--fsize=1048576', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO, encoding: 'utf8', timeout: 60_000,
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as Record<string, { kind: string; field: string; message: string }>;
    expect(out.create).toMatchObject({ kind: 'OutOfRange', field: 'size', message: expect.stringMatching(/^size: 2MiB is more than the filesystem holding .* allows in one file/) });
    expect(out.expand).toEqual({ kind: 'OutOfRange', field: 'size' });
  });

  it('checks each filesystem minimum at validate time, naming size', () => {
    const base = { fsType: null, volumeMode: 'filesystem' as const, options: {} };
    for (const [fs, tooSmall, ok] of [['xfs', 299 * MiB, 300 * MiB], ['btrfs', 108 * MiB, 109 * MiB], ['ext4', 7 * MiB, 8 * MiB]] as const) {
      expect(() => backend.validateCreate({ ...base, fsType: fs as FsType, sizeBytes: tooSmall })).toThrow(expect.objectContaining({ kind: 'OutOfRange', field: 'size' }));
      expect(backend.validateCreate({ ...base, fsType: fs as FsType, sizeBytes: ok }).sizeBytes).toBe(ok);
    }
    expect(() => backend.validateCreate({ ...base, fsType: 'xfs', sizeBytes: 64 * MiB })).toThrow(/xfs needs at least 300MiB/);
  });

  it('fills default size and fs, validates opts.discard and refuses fs on block', () => {
    const spec = backend.validateCreate({ sizeBytes: 0, fsType: null, volumeMode: 'filesystem', options: { discard: 'true' } });
    expect(spec).toEqual({ sizeBytes: 1024 ** 3, fsType: 'ext4', volumeMode: 'filesystem', options: { discard: 'true' } });
    expect(() => backend.validateCreate({ ...spec, options: { discard: 'yes' } })).toThrow(expect.objectContaining({ field: 'opts.discard' }));
    expect(() => backend.validateCreate({ ...spec, options: { mkfsOptions: '-O ^has_journal' } })).toThrow(expect.objectContaining({ field: 'opts.mkfsOptions' }));
    expect(() => backend.validateCreate({ ...spec, options: { discrad: 'true' } })).toThrow(/opts\.discrad: unknown loop option; did you mean "discard"\?/);
    expect(() => backend.validateCreate({ ...spec, volumeMode: 'block', fsType: 'ext4' })).toThrow(expect.objectContaining({ field: 'fs' }));
  });

  it('names bad settings as backends.<instance>.<key>', async () => {
    await expect(createLoopBackend(ctx(root, { defaultFs: 'zfs' }))).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'backends.fast.defaultFs' });
    await expect(createLoopBackend(ctx(root, { defaultSize: 'lots' }))).rejects.toMatchObject({ field: 'backends.fast.defaultSize' });
    await expect(createLoopBackend(ctx(root, { defaultFs: 'xfs', defaultSize: '64MiB' }))).rejects.toMatchObject({ field: 'backends.fast.defaultSize' });
    await expect(createLoopBackend(ctx(root, { pool: '/x' }))).rejects.toMatchObject({ field: 'backends.fast.pool' });
  });

  it('creates a sparse image and makes the filesystem only on first mount', async () => {
    const vol = volume();
    await backend.create(vol);
    const img = await stat(backend.image(vol));
    expect(img.size).toBe(16 * MiB);
    expect(img.blocks * 512).toBeLessThan(MiB);
    const { device } = await backend.attach(vol, { node: NODE });
    expect(await probeFilesystem(createExec(), device!)).toBeNull();
    const { path } = await backend.mount(vol, { node: NODE, device });
    expect(path).toBe(join(root, 'mounts', vol.id, 'data'));
    expect((await probeFilesystem(createExec(), device!))?.type).toBe('ext4');
    expect((await findMount(join(root, 'mounts', vol.id)))?.source).toBe(device);
    expect(await readdir(join(root, 'mounts', vol.id))).toEqual(expect.arrayContaining(['data', 'lost+found']));
  });

  it('reuses the device the kernel already has for the image (crash after losetup)', async () => {
    const vol = volume();
    await backend.create(vol);
    const first = await backend.attach(vol, { node: NODE });
    // A second backend object (a restarted daemon) must find the same device, not attach another.
    const again = (await createLoopBackend(ctx(root))) as LoopBackend;
    expect((await again.attach(vol, { node: NODE })).device).toBe(first.device);
    const backing = (await listLoopDevices(createExec())).filter((d) => d.backFile === backend.image(vol));
    expect(backing.map((d) => d.name)).toEqual([first.device]);
  });

  it('refuses to detach while mounted, and to mount a device holding another filesystem', async () => {
    const vol = volume();
    await backend.create(vol);
    const { device } = await backend.attach(vol, { node: NODE });
    await backend.mount(vol, { node: NODE, device });
    await expect(backend.detach(vol)).rejects.toMatchObject({ kind: 'FailedPrecondition' });
    await backend.unmount(vol);
    const asXfs = { ...vol, fsType: 'xfs' as const };
    await expect(backend.mount(asXfs, { node: NODE, device })).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/holds ext4/) });
  });

  it('reports a busy mount as InUse and unmounts once released', async () => {
    const vol = volume();
    await backend.create(vol);
    const { device } = await backend.attach(vol, { node: NODE });
    const { path } = await backend.mount(vol, { node: NODE, device });
    const fh = await open(join(path, 'held'), 'w');
    try {
      await expect(backend.unmount(vol)).rejects.toMatchObject({ kind: 'InUse' });
    } finally {
      await fh.close();
    }
    await backend.unmount(vol);
    expect((await backend.inspect(vol)).mounted).toBe(false);
  });

  it('listPresent finds a device whose image was deleted behind its back, and delete frees it', async () => {
    const vol = volume();
    await backend.create(vol);
    const { device } = await backend.attach(vol, { node: NODE });
    await rm(backend.image(vol));
    expect(await backend.listPresent()).toEqual([vol.id]);
    expect((await backend.inspect(vol)).exists).toBe(false);
    await backend.delete(vol);
    expect(await backend.listPresent()).toEqual([]);
    expect((await listLoopDevices(createExec())).some((d) => d.name === device && d.backFile === backend.image(vol))).toBe(false);
  });

  it('expand says honestly which filesystems grew while mounted: xfs yes, ext4 at next mount', async () => {
    for (const [fs, size] of [['ext4', 32 * MiB], ['xfs', 300 * MiB]] as const) {
      const vol = volume({ fsType: fs, sizeBytes: size });
      await backend.create(vol);
      const { device } = await backend.attach(vol, { node: NODE });
      await backend.mount(vol, { node: NODE, device });
      const before = (await backend.stats(vol)).totalBytes;
      const outcome = await backend.expand(vol, size + 64 * MiB, { mounted: true, device });
      expect(outcome).toEqual({ pendingFsGrowth: fs === 'ext4' });
      expect((await stat(backend.image(vol))).size).toBe(size + 64 * MiB);
      const afterOnline = (await backend.stats(vol)).totalBytes;
      // Filesystem overhead grows with the size, so "grew" means most of the 64 MiB added.
      if (fs === 'xfs') expect(afterOnline).toBeGreaterThan(before + 48 * MiB);
      else expect(afterOnline).toBe(before);
      await backend.unmount(vol);
      await backend.mount({ ...vol, sizeBytes: size + 64 * MiB }, { node: NODE, device });
      expect((await backend.stats(vol)).totalBytes).toBeGreaterThan(before + 48 * MiB);
    }
  });

  it('stats measures whether the filesystem has grown: a small ext4 growth while mounted stays pending until the next mount', async () => {
    const vol = volume({ fsType: 'ext4', sizeBytes: 512 * MiB });
    await backend.create(vol);
    const { device } = await backend.attach(vol, { node: NODE });
    expect((await backend.stats(vol)).fsGrowthPending).toBeUndefined(); // no filesystem yet
    await backend.mount(vol, { node: NODE, device });
    const before = await backend.stats(vol);
    expect(before.fsGrowthPending).toBe(false);
    // +6%: statfs already shows more than 85% of the new size, so the frontends' old ratio
    // rule took this growth for done.
    expect(await backend.expand(vol, 544 * MiB, { mounted: true, device })).toEqual({ pendingFsGrowth: true });
    const pending = await backend.stats(vol);
    expect(pending).toMatchObject({ fsGrowthPending: true, totalBytes: before.totalBytes });
    expect(pending.totalBytes).toBeGreaterThan(0.85 * 544 * MiB);
    expect(await readFsSize(device!)).toBe(512 * MiB);
    await backend.unmount(vol);
    expect((await backend.stats(vol)).fsGrowthPending).toBe(true); // from the image: grows at the next mount
    await backend.mount({ ...vol, sizeBytes: 544 * MiB }, { node: NODE, device });
    const grown = await backend.stats(vol);
    expect(grown.fsGrowthPending).toBe(false);
    expect(grown.totalBytes).toBeGreaterThan(before.totalBytes + 24 * MiB);
    expect(await readFsSize(device!)).toBe(544 * MiB);
    await backend.unmount(vol);
    expect((await backend.stats(vol)).fsGrowthPending).toBe(false);
  });

  it('stats says an online xfs grow is done at once (its on-disk superblock lags), and nothing about block volumes', async () => {
    const vol = volume({ fsType: 'xfs', sizeBytes: 300 * MiB });
    await backend.create(vol);
    const { device } = await backend.attach(vol, { node: NODE });
    await backend.mount(vol, { node: NODE, device });
    expect(await backend.expand(vol, 340 * MiB, { mounted: true, device })).toEqual({ pendingFsGrowth: false });
    // xfs writes its primary superblock back only at a log checkpoint (tens of seconds
    // later), so the one on the device still says 300 MiB here: stats must not read it.
    expect((await backend.stats(vol)).fsGrowthPending).toBe(false);
    await backend.unmount(vol);
    expect(await readFsSize(backend.image(vol))).toBe(340 * MiB);
    expect((await backend.stats(vol)).fsGrowthPending).toBe(false);

    const blk = volume({ volumeMode: 'block', sizeBytes: 8 * MiB });
    await backend.create(blk);
    await backend.attach(blk, { node: NODE });
    expect(await backend.stats(blk)).not.toHaveProperty('fsGrowthPending');
  });

  it('refuses btrfs growth under 256MiB and a restore into another filesystem type', async () => {
    const vol = volume({ fsType: 'btrfs', sizeBytes: 128 * MiB });
    await backend.create(vol);
    await expect(backend.expand(vol, 200 * MiB, { mounted: false, device: null })).rejects.toMatchObject({ kind: 'OutOfRange', field: 'size' });
    expect((await stat(backend.image(vol))).size).toBe(128 * MiB);
    const { device } = await backend.attach(vol, { node: NODE });
    await backend.mount(vol, { node: NODE, device });
    const snap = { id: 'snap-0123456789abcdefghjkmnpqrs', volumeId: vol.id, sizeBytes: vol.sizeBytes };
    stack.defer('delete snapshot', () => backend.deleteSnapshot(snap));
    await backend.createSnapshot(vol, snap);
    const asExt4 = volume({ fsType: 'ext4', sizeBytes: 128 * MiB });
    await expect(backend.createFromSnapshot(asExt4, snap)).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'fs' });
    const tooSmallGrowth = volume({ fsType: 'btrfs', sizeBytes: 200 * MiB });
    await expect(backend.createFromSnapshot(tooSmallGrowth, snap)).rejects.toMatchObject({ kind: 'OutOfRange', field: 'size' });
    expect(await backend.listPresent()).toEqual([vol.id]);
  });

  it('a restore into a bigger volume grows its filesystem at first mount (ext4 offline, xfs online)', async () => {
    for (const [fs, size] of [['ext4', 32 * MiB], ['xfs', 300 * MiB]] as const) {
      const src = volume({ fsType: fs, sizeBytes: size });
      await backend.create(src);
      const a = await backend.attach(src, { node: NODE });
      await writeFile(join((await backend.mount(src, { node: NODE, device: a.device })).path, 'f'), fs);
      const snap = { id: `snap-${randomVolumeId().slice(4)}`, volumeId: src.id, sizeBytes: size };
      stack.defer('delete snapshot', () => backend.deleteSnapshot(snap));
      await backend.createSnapshot(src, snap);
      const srcTotal = (await backend.stats(src)).totalBytes;
      const big = volume({ fsType: fs, sizeBytes: size * 2 });
      const progress: number[] = [];
      await backend.createFromSnapshot(big, snap, (done) => progress.push(done));
      expect(progress.length).toBeGreaterThan(0);
      const { device } = await backend.attach(big, { node: NODE });
      const { path } = await backend.mount(big, { node: NODE, device });
      expect((await backend.stats(big)).totalBytes).toBeGreaterThan(srcTotal + size / 2);
      expect(await readFile(join(path, 'f'), 'utf8')).toBe(fs);
    }
  });

  it('a crash mid-copy leaves only a .partial file, which delete removes and a retry replaces', async () => {
    const src = volume();
    await backend.create(src);
    const clone = volume();
    await writeFile(`${backend.image(clone)}.partial`, 'torn');
    expect(await backend.listPresent()).toEqual([src.id]);
    await backend.createFromVolume(clone, src);
    expect((await stat(backend.image(clone))).size).toBe(16 * MiB);
    await backend.delete(clone);
    expect(await readdir(root + '/backends/fast')).toEqual(expect.not.arrayContaining([expect.stringContaining(clone.id)]));
  });

  it('stats of an unmounted volume come from the image', async () => {
    const vol = volume();
    await backend.create(vol);
    await writeFile(backend.image(vol), Buffer.alloc(MiB, 1), { flag: 'r+' });
    const s = await backend.stats(vol);
    expect(s).toMatchObject({ totalBytes: 16 * MiB, abnormal: false });
    expect(s.usedBytes).toBeGreaterThanOrEqual(MiB);
  });
});
