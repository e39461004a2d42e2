// The btrfs backend against a real btrfs filesystem on a loop device (one per test).
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend, BackendSnapshot, BackendVolume } from '../../core/backend.js';
import { BerthError } from '../../core/errors.js';
import { createSilentLogger } from '../../core/log.js';
import { createExec } from '../../core/os/exec.js';
import { makeBtrfsPool, writeMiB, type BtrfsPool } from '../../test/helpers/btrfs-pool.js';
import { runBackendConformance } from '../../test/conformance/backend.case.js';
import { createBtrfsBackend } from './btrfs.js';

/** The node these backends run as (BackendContext.node): attach and mount act for it. */
const NODE = 'test-node';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const exec = createExec();
const log = createSilentLogger();

const id = (prefix: 'vol' | 'snap') => `${prefix}-${randomBytes(16).toString('hex').slice(0, 26)}`;
const volume = (sizeBytes: number, name = 'v'): BackendVolume => ({
  id: id('vol'), name, sizeBytes, fsType: null, volumeMode: 'filesystem', options: {},
});
const snapshotOf = (vol: BackendVolume): BackendSnapshot => ({ id: id('snap'), volumeId: vol.id, sizeBytes: vol.sizeBytes });

async function expectBerthError(p: Promise<unknown> | (() => unknown), kind: string, field?: string): Promise<BerthError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(BerthError);
  const e = caught as BerthError;
  expect(e.kind).toBe(kind);
  if (field !== undefined) expect(e.field).toBe(field);
  return e;
}

// The conformance suite checks that nothing is left mounted under its own root, so the pool
// (a mount of its own) lives in a separate mkdtemp root and goes away after each test.
const conformancePools: BtrfsPool[] = [];
afterEach(async () => {
  for (const p of conformancePools.splice(0)) await p.cleanup();
});

runBackendConformance({
  name: 'btrfs',
  makeBackend: async (root, node) => {
    const p = await makeBtrfsPool({ prefix: 'berth-conf-btrfs-' });
    conformancePools.push(p);
    return createBtrfsBackend({ name: 'conf', settings: { pool: p.pool }, stateRoot: root, node, exec, log });
  },
});

let pool: BtrfsPool;
let backend: Backend;
const make = (settings: Record<string, unknown> = {}, name = 'fast') =>
  createBtrfsBackend({ name, settings: { driver: 'btrfs', pool: pool.pool, ...settings }, stateRoot: pool.root, node: NODE, exec, log });

function withPool(): void {
  beforeEach(async () => {
    pool = await makeBtrfsPool();
    backend = await make();
  });
  afterEach(async () => {
    await pool?.cleanup();
  });
}

describe('btrfs backend: settings and pool', () => {
  withPool();

  it('declares its capabilities honestly and describes the pool', () => {
    expect(backend.driver).toBe('btrfs');
    expect(backend.capabilities).toEqual({
      sizeEnforced: true, block: false, snapshots: true, clones: true, expansion: 'online',
      fsTypes: [], attachable: false, fencing: false, scope: 'local',
    });
    for (const m of ['createSnapshot', 'deleteSnapshot', 'createFromSnapshot', 'createFromVolume', 'expand'] as const) {
      expect(typeof backend[m]).toBe('function');
    }
    expect(backend.describe()).toMatchObject({ pool: pool.pool, defaultSize: 1024 ** 3 });
  });

  it('refuses a pool that is not btrfs, missing, or unset, naming backends.<instance>.pool', async () => {
    const plain = await mkdtemp(join(tmpdir(), 'berth-not-btrfs-'));
    try {
      const notBtrfs = await expectBerthError(
        createBtrfsBackend({ name: 'x', settings: { pool: plain }, stateRoot: plain, node: NODE, exec, log }), 'InvalidArgument', 'backends.x.pool');
      expect(notBtrfs.message).toMatch(/not on a btrfs filesystem/);
      await expectBerthError(
        createBtrfsBackend({ name: 'x', settings: { pool: join(plain, 'nope') }, stateRoot: plain, node: NODE, exec, log }), 'InvalidArgument', 'backends.x.pool');
      await expectBerthError(createBtrfsBackend({ name: 'y', settings: {}, stateRoot: plain, node: NODE, exec, log }), 'InvalidArgument', 'backends.y.pool');
      await expectBerthError(
        createBtrfsBackend({ name: 'y', settings: { pool: 'relative/dir' }, stateRoot: plain, node: NODE, exec, log }), 'InvalidArgument', 'backends.y.pool');
    } finally {
      await rm(plain, { recursive: true, force: true });
    }
  });

  it('refuses unknown settings and bad default sizes by name', async () => {
    await expectBerthError(make({ poool: '/x' }), 'InvalidArgument', 'backends.fast.poool');
    await expectBerthError(make({ defaultSize: 'lots' }), 'InvalidArgument', 'backends.fast.defaultSize');
    await expectBerthError(make({ defaultSize: 1000 }), 'InvalidArgument', 'backends.fast.defaultSize');
    const b = await make({ defaultSize: '64MiB' });
    expect(b.validateCreate({ sizeBytes: 0, fsType: null, volumeMode: 'filesystem', options: {} }).sizeBytes).toBe(64 * MiB);
  });

  it('enables quotas on the pool and makes volumes/ and snapshots/', async () => {
    const { stdout } = await run('btrfs', ['qgroup', 'show', pool.pool]);
    expect(stdout).toMatch(/0\/5/);
    expect((await readdir(pool.pool)).sort()).toEqual(['snapshots', 'volumes']);
  });

  it('validateCreate fills defaults and refuses block mode, other filesystems, options and tiny sizes', async () => {
    const base = { sizeBytes: 0, fsType: null, volumeMode: 'filesystem', options: {} } as const;
    expect(backend.validateCreate(base)).toEqual({ ...base, sizeBytes: 1024 ** 3 });
    expect(backend.validateCreate({ ...base, fsType: 'btrfs', sizeBytes: 5 * MiB })).toEqual({ ...base, sizeBytes: 5 * MiB });
    await expectBerthError(() => backend.validateCreate({ ...base, volumeMode: 'block' }), 'InvalidArgument', 'mode');
    await expectBerthError(() => backend.validateCreate({ ...base, fsType: 'xfs' }), 'InvalidArgument', 'fs');
    await expectBerthError(() => backend.validateCreate({ ...base, options: { compress: 'zstd' } }), 'InvalidArgument', 'opts.compress');
    await expectBerthError(() => backend.validateCreate({ ...base, sizeBytes: 4096 }), 'OutOfRange', 'size');
  });
});

describe('btrfs backend: volumes', () => {
  withPool();
  it('creates a subvolume with a qgroup limit, idempotently, and deletes it idempotently', async () => {
    const vol = volume(32 * MiB);
    await backend.create(vol);
    await backend.create(vol);
    const path = join(pool.pool, 'volumes', vol.id);
    const { stdout } = await run('btrfs', ['qgroup', 'show', '--raw', '-r', '-f', path]);
    expect(stdout).toMatch(new RegExp(`\\s${32 * MiB}\\s`));
    expect(await backend.inspect(vol)).toEqual({ exists: true, device: null, mounted: false });
    expect(await backend.listPresent()).toEqual([vol.id]);
    expect('attach' in backend, 'no devices: no attach').toBe(false);
    const { path: mounted } = await backend.mount(vol, { node: NODE, device: null });
    expect(mounted).toBe(path);
    expect(await readdir(mounted)).toEqual([]); // a new volume looks empty
    await backend.unmount(vol);
    await backend.delete(vol);
    await backend.delete(vol);
    expect(await backend.inspect(vol)).toEqual({ exists: false, device: null, mounted: false });
    expect(await backend.listPresent()).toEqual([]);
    await expectBerthError(backend.mount(vol, { node: NODE, device: null }), 'NotFound');
  });

  it('refuses to delete a volume holding a nested subvolume with FailedPrecondition, and deletes it once that is gone', async () => {
    const vol = volume(16 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    await run('btrfs', ['subvolume', 'create', join(path, 'inner')]);
    const err = await expectBerthError(backend.delete(vol), 'FailedPrecondition');
    expect(err.message).toMatch(/nested btrfs subvolume/);
    await run('btrfs', ['subvolume', 'delete', join(path, 'inner')]);
    await backend.delete(vol);
    expect((await backend.inspect(vol)).exists).toBe(false);
  });

  it('create after a crash between subvolume and limit sets the limit', async () => {
    const vol = volume(24 * MiB);
    const path = join(pool.pool, 'volumes', vol.id);
    await run('btrfs', ['subvolume', 'create', path]); // the first step only, as if the daemon died here
    expect((await backend.stats(vol)).abnormal).toBe(true); // no limit yet: reported, not hidden
    await backend.create(vol);
    const s = await backend.stats(vol);
    expect(s).toMatchObject({ totalBytes: 24 * MiB, abnormal: false });
  });

  it('enforces the size limit: writing well past it fails with EDQUOT', async () => {
    const vol = volume(16 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    expect((await writeMiB(join(path, 'fits'), 8)).ok).toBe(true);
    const over = await writeMiB(join(path, 'too-much'), 64);
    expect(over.ok).toBe(false);
    expect(over.stderr).toMatch(/Disk quota exceeded|No space left/);
    await run('sync', ['-f', path]);
    const s = await backend.stats(vol);
    expect(s.totalBytes).toBe(16 * MiB);
    expect(s.usedBytes).toBeGreaterThan(8 * MiB);
    expect(s.usedBytes).toBeLessThanOrEqual(16 * MiB + MiB);
  });

  it('expand raises the limit online: a write refused before succeeds after', async () => {
    const vol = volume(16 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    expect((await writeMiB(join(path, 'big'), 40)).ok).toBe(false);
    await unlink(join(path, 'big'));
    await run('sync', ['-f', path]);
    await backend.expand!(vol, 96 * MiB, { mounted: true, device: null });
    await backend.expand!(vol, 96 * MiB, { mounted: true, device: null }); // idempotent
    expect((await writeMiB(join(path, 'big'), 40)).ok).toBe(true);
    const s = await backend.stats(vol);
    expect(s.totalBytes).toBe(96 * MiB);
    expect(s.abnormal).toBe(false);
  });

  it('stats report qgroup usage; capacity reports the pool', async () => {
    const vol = volume(64 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    await writeMiB(join(path, 'data'), 10);
    await run('sync', ['-f', path]);
    const s = await backend.stats(vol);
    expect(s.totalBytes).toBe(64 * MiB);
    expect(s.usedBytes).toBeGreaterThanOrEqual(10 * MiB);
    expect(s.usedBytes + s.availableBytes).toBeLessThanOrEqual(64 * MiB);
    expect(s.availableBytes).toBeGreaterThan(0);
    expect(s.totalInodes).toBeNull();
    const cap = await backend.capacity();
    expect(cap.totalBytes).toBeGreaterThan(200 * MiB);
    expect(cap.totalBytes).toBeLessThanOrEqual(256 * MiB);
    expect(cap.availableBytes).toBeLessThan(cap.totalBytes);
    const missing = await backend.stats(volume(MiB * 8));
    expect(missing.abnormal).toBe(true);
    expect(missing.message).toMatch(/missing/);
  });
});

describe('btrfs backend: snapshots and clones', () => {
  withPool();
  it('a volume restored from a snapshot has the data written before it, not after', async () => {
    const vol = volume(32 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    await writeFile(join(path, 'before.txt'), 'before');
    await writeFile(join(path, 'changed.txt'), 'v1');
    const snap = snapshotOf(vol);
    await backend.createSnapshot!(vol, snap);
    await backend.createSnapshot!(vol, snap); // idempotent
    await writeFile(join(path, 'after.txt'), 'after');
    await writeFile(join(path, 'changed.txt'), 'v2');

    const restored = volume(48 * MiB, 'restored');
    const progress: Array<[number, number]> = [];
    await backend.createFromSnapshot!(restored, snap, (d, t) => progress.push([d, t]));
    await backend.createFromSnapshot!(restored, snap); // idempotent
    expect(progress.at(-1)).toEqual([snap.sizeBytes, snap.sizeBytes]);
    const { path: rpath } = await backend.mount(restored, { node: NODE, device: null });
    expect((await readdir(rpath)).sort()).toEqual(['before.txt', 'changed.txt']);
    expect(await readFile(join(rpath, 'changed.txt'), 'utf8')).toBe('v1');
    // The restored volume is writable and has its own limit, not the snapshot's inherited one.
    await writeFile(join(rpath, 'new.txt'), 'x');
    expect((await backend.stats(restored)).totalBytes).toBe(48 * MiB);
    // The snapshot itself is read-only.
    await expect(writeFile(join(pool.pool, 'snapshots', snap.id, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
  });

  it('refuses restoring into a volume smaller than the snapshot, and from a missing snapshot', async () => {
    const vol = volume(32 * MiB);
    await backend.create(vol);
    const snap = snapshotOf(vol);
    await backend.createSnapshot!(vol, snap);
    await expectBerthError(backend.createFromSnapshot!(volume(16 * MiB), snap), 'OutOfRange', 'size');
    await expectBerthError(backend.createFromSnapshot!(volume(32 * MiB), snapshotOf(vol)), 'NotFound');
    await expectBerthError(backend.createSnapshot!(volume(8 * MiB), snapshotOf(vol)), 'NotFound');
  });

  it('a clone is independent of its source in both directions', async () => {
    const src = volume(32 * MiB, 'src');
    await backend.create(src);
    const { path: spath } = await backend.mount(src, { node: NODE, device: null });
    await writeFile(join(spath, 'shared.txt'), 'original');
    const clone = volume(32 * MiB, 'clone');
    await backend.createFromVolume!(clone, src);
    const { path: cpath } = await backend.mount(clone, { node: NODE, device: null });
    expect(await readFile(join(cpath, 'shared.txt'), 'utf8')).toBe('original');

    await writeFile(join(cpath, 'shared.txt'), 'clone edit');
    await writeFile(join(cpath, 'clone-only.txt'), 'c');
    await writeFile(join(spath, 'source-only.txt'), 's');
    expect(await readFile(join(spath, 'shared.txt'), 'utf8')).toBe('original');
    expect((await readdir(spath)).sort()).toEqual(['shared.txt', 'source-only.txt']);
    expect((await readdir(cpath)).sort()).toEqual(['clone-only.txt', 'shared.txt']);

    // Deleting the source leaves the clone intact.
    await backend.delete(src);
    expect(await readFile(join(cpath, 'shared.txt'), 'utf8')).toBe('clone edit');
    await expectBerthError(backend.createFromVolume!(volume(32 * MiB), src), 'NotFound');
    await expectBerthError(backend.createFromVolume!(volume(8 * MiB), clone), 'OutOfRange', 'size');
  });

  it('a clone gets its own size limit, enforced independently of its source', async () => {
    const src = volume(16 * MiB, 'src');
    await backend.create(src);
    const clone = volume(64 * MiB, 'clone');
    await backend.createFromVolume!(clone, src);
    const { path: cpath } = await backend.mount(clone, { node: NODE, device: null });
    expect((await writeMiB(join(cpath, 'big'), 32)).ok).toBe(true); // past the source's 16 MiB
    const { path: spath } = await backend.mount(src, { node: NODE, device: null });
    expect((await writeMiB(join(spath, 'big'), 48)).ok).toBe(false);
  });

  it('deleting a snapshot a volume was restored from is allowed: the restored volume is independent', async () => {
    const vol = volume(32 * MiB);
    await backend.create(vol);
    const { path } = await backend.mount(vol, { node: NODE, device: null });
    await writeFile(join(path, 'keep.txt'), 'kept');
    const snap = snapshotOf(vol);
    await backend.createSnapshot!(vol, snap);
    const restored = volume(32 * MiB, 'restored');
    await backend.createFromSnapshot!(restored, snap);

    await backend.deleteSnapshot!(snap);
    await backend.deleteSnapshot!(snap); // idempotent
    expect(await readdir(join(pool.pool, 'snapshots'))).toEqual([]);
    const { path: rpath } = await backend.mount(restored, { node: NODE, device: null });
    expect(await readFile(join(rpath, 'keep.txt'), 'utf8')).toBe('kept');
    await writeFile(join(rpath, 'more.txt'), 'still writable');
    // The source volume can also go while the snapshot exists.
    const snap2 = snapshotOf(vol);
    await backend.createSnapshot!(vol, snap2);
    await backend.delete(vol);
    const again = volume(32 * MiB, 'again');
    await backend.createFromSnapshot!(again, snap2);
    expect(await readFile(join((await backend.mount(again, { node: NODE, device: null })).path, 'keep.txt'), 'utf8')).toBe('kept');
    expect(await backend.listPresent()).toEqual([again.id, restored.id].sort());
  });
});
