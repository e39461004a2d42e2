// The suite every backend runs (Hono's common.case.test.ts model): each backend's test file
// calls runBackendConformance() with a factory; a test a backend cannot pass is listed in
// `skip` with the exact test name and a written reason. It runs against the real OS: every
// test has its own mkdtemp root (used as stateRoot) and afterEach tears everything down
// through the backend, sweeps what is left, and fails the test if the backend leaked a
// mount or a loop device.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canAttach, canClone, canExpand, canFence, canSnapshot, type Backend, type BackendVolume, type CreateSpec, type Expanding, type Snapshotting } from '../../core/backend.js';
import { BerthError } from '../../core/errors.js';
import { readMountInfo } from '../../core/os/mounts.js';
import { createCleanupStack, findLeftovers, sweepRoot, type CleanupStack } from '../helpers/cleanup.js';

export interface ConformanceOptions {
  /** Suite title, e.g. "loop (xfs)". */
  readonly name: string;
  /** Builds the backend under test with `root` as its stateRoot (a fresh mkdtemp per test) on node `node`. */
  makeBackend(root: string, node: string): Promise<Backend>;
  /** Size of the filesystem volumes the suite makes; at least the backend's minimum. Default 32 MiB. */
  readonly volumeSize?: number;
  /** Spec fields every volume gets (e.g. { fsType: 'xfs' }). */
  readonly spec?: Partial<CreateSpec>;
  readonly skip?: ReadonlyArray<{ readonly test: string; readonly reason: string }>;
}

const MiB = 1024 * 1024;
/** The node the suite's backends run as (BackendContext.node); attach and mount act for it. */
const NODE = 'conformance-node';
const ID_CHARS = '0123456789abcdefghjkmnpqrstvwxyz';

/** A fresh id in the core's shape: "vol-" + 26 base32 chars. */
export function randomVolumeId(): string {
  return `vol-${[...randomBytes(26)].map((b) => ID_CHARS[b % 32]).join('')}`;
}

async function expectBerthError(p: Promise<unknown> | (() => unknown), kind: string, field?: string): Promise<BerthError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected a BerthError ${kind}`).toBeInstanceOf(BerthError);
  const be = err as BerthError;
  expect(be.kind).toBe(kind);
  if (field !== undefined) expect(be.field).toBe(field);
  return be;
}

/** Writes `bytes` in 1 MiB chunks with fsync; resolves to the error code it hit, or null. */
async function writeUntil(path: string, bytes: number, opts: { flag?: string; position?: number } = {}): Promise<string | null> {
  const chunk = randomBytes(MiB);
  const fh = await open(path, opts.flag ?? 'w');
  try {
    let pos = opts.position ?? 0;
    for (let done = 0; done < bytes; done += MiB) {
      await fh.write(chunk, 0, Math.min(MiB, bytes - done), opts.position === undefined ? null : pos);
      pos += MiB;
    }
    await fh.sync();
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // libuv has no name for EDQUOT (122 on Linux) and reports "Unknown system error -122".
    if (e.errno === -122) return 'EDQUOT';
    return e.code ?? String(err);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export function runBackendConformance(opts: ConformanceOptions): void {
  const size = opts.volumeSize ?? 32 * MiB;
  const skipped = new Map((opts.skip ?? []).map((s) => [s.test, s.reason]));
  const test = (title: string, fn: () => Promise<void>) =>
    skipped.has(title) ? it.skip(`${title} (skipped: ${skipped.get(title)})`, fn) : it(title, fn);

  describe(`backend conformance: ${opts.name}`, () => {
    let root = '';
    let backend: Backend;
    let stack: CleanupStack;

    beforeEach(async () => {
      root = await mkdtemp(join(tmpdir(), 'berth-conf-'));
      stack = createCleanupStack();
      stack.defer('remove root', () => rm(root, { recursive: true, force: true }));
      stack.defer('check and sweep leftovers', async () => {
        const swept = await sweepRoot(root);
        expect(swept, 'the backend left mounts or loop devices behind').toEqual({ mounts: [], loops: [] });
      });
      backend = await opts.makeBackend(root, NODE);
    });

    afterEach(async () => {
      await stack.run();
      expect(await findLeftovers(root)).toEqual({ mounts: [], loops: [] });
    });

    /** A validated volume; its teardown (unmount, detach, delete) is on the cleanup stack. */
    function newVolume(over: Partial<CreateSpec> = {}): BackendVolume {
      const spec = backend.validateCreate({ sizeBytes: size, fsType: null, volumeMode: 'filesystem', options: {}, ...opts.spec, ...over });
      const id = randomVolumeId();
      const vol: BackendVolume = { id, name: `conf-${id.slice(-8)}`, ...spec };
      stack.defer(`teardown ${id}`, async () => {
        await backend.unmount(vol);
        await detach(vol);
        await backend.delete(vol);
      });
      return vol;
    }

    /** The volume's device for this node, where the backend has devices (null otherwise). */
    async function attach(vol: BackendVolume): Promise<string | null> {
      return canAttach(backend) ? (await backend.attach(vol, { node: NODE })).device : null;
    }

    async function detach(vol: BackendVolume): Promise<void> {
      if (canAttach(backend)) await backend.detach(vol);
    }

    async function attachAndMount(vol: BackendVolume): Promise<string> {
      const device = await attach(vol);
      return (await backend.mount(vol, { node: NODE, device })).path;
    }

    async function unmountAndDetach(vol: BackendVolume): Promise<void> {
      await backend.unmount(vol);
      await detach(vol);
    }

    test('validateCreate fills defaults and names unknown options', async () => {
      const spec = backend.validateCreate({ sizeBytes: 0, fsType: null, volumeMode: 'filesystem', options: {}, ...opts.spec });
      if (backend.capabilities.sizeEnforced) expect(spec.sizeBytes).toBeGreaterThan(0);
      if (backend.capabilities.fsTypes.length) expect(backend.capabilities.fsTypes).toContain(spec.fsType);
      await expectBerthError(() => backend.validateCreate({ sizeBytes: size, fsType: null, volumeMode: 'filesystem', options: { 'no-such-option': 'x' }, ...opts.spec }), 'InvalidArgument', 'opts.no-such-option');
      if (!backend.capabilities.block) {
        await expectBerthError(() => backend.validateCreate({ sizeBytes: size, fsType: null, volumeMode: 'block', options: {} }), 'InvalidArgument', 'mode');
      }
      expect(backend.describe()).toBeTypeOf('object');
    });

    test('create is idempotent', async () => {
      const vol = newVolume();
      await backend.create(vol);
      await backend.create(vol);
      expect(await backend.inspect(vol)).toEqual({ exists: true, device: null, mounted: false });
      expect(await backend.listPresent()).toContain(vol.id);
    });

    test('delete is idempotent and forgets the volume', async () => {
      const vol = newVolume();
      await backend.delete(vol); // never created: not an error
      await backend.create(vol);
      await backend.delete(vol);
      await backend.delete(vol);
      expect(await backend.inspect(vol)).toEqual({ exists: false, device: null, mounted: false });
      expect(await backend.listPresent()).not.toContain(vol.id);
    });

    test('attach, mount, unmount and detach are idempotent', async () => {
      const vol = newVolume();
      await backend.create(vol);
      await backend.unmount(vol); // never mounted
      await detach(vol); // never attached
      const a1 = await attach(vol);
      const a2 = await attach(vol);
      expect(a2).toBe(a1);
      if (backend.capabilities.attachable) expect(a1).toMatch(/^\/dev\//);
      else expect(a1).toBeNull();
      if (canAttach(backend)) expect(await backend.attachedHere(vol), 'attachedHere after attach').toBe(true);
      const m1 = await backend.mount(vol, { node: NODE, device: a1 });
      const m2 = await backend.mount(vol, { node: NODE, device: a1 });
      expect(m2.path).toBe(m1.path);
      expect((await stat(m1.path)).isDirectory()).toBe(true);
      expect(await readdir(m1.path), 'a new volume looks empty').toEqual([]);
      await backend.unmount(vol);
      await backend.unmount(vol);
      await detach(vol);
      await detach(vol);
      if (canAttach(backend)) expect(await backend.attachedHere(vol), 'attachedHere after detach').toBe(false);
      expect(await backend.inspect(vol)).toEqual({ exists: true, device: null, mounted: false });
    });

    test('mount needs attach first where the backend is attachable', async () => {
      if (!backend.capabilities.attachable) {
        const vol = newVolume();
        await backend.create(vol);
        expect((await backend.mount(vol, { node: NODE, device: null })).path).toBeTruthy();
        return;
      }
      const vol = newVolume();
      await backend.create(vol);
      await expectBerthError(backend.mount(vol, { node: NODE, device: null }), 'FailedPrecondition');
    });

    test('data written survives unmount and mount', async () => {
      const vol = newVolume();
      await backend.create(vol);
      const p1 = await attachAndMount(vol);
      const payload = randomBytes(256 * 1024);
      await writeFile(join(p1, 'payload.bin'), payload);
      await unmountAndDetach(vol);
      const p2 = await attachAndMount(vol);
      expect(Buffer.compare(await readFile(join(p2, 'payload.bin')), payload)).toBe(0);
    });

    test('inspect matches the kernel', async () => {
      const vol = newVolume();
      await backend.create(vol);
      const device = await attach(vol);
      expect((await backend.inspect(vol)).device).toBe(device);
      if (device) expect((await stat(device)).isBlockDevice()).toBe(true);
      const { path } = await backend.mount(vol, { node: NODE, device });
      const state = await backend.inspect(vol);
      expect(state.exists).toBe(true);
      if (device) {
        expect(state.mounted).toBe(true);
        const mounts = (await readMountInfo()).filter((m) => m.source === device);
        expect(mounts.length, `a mount of ${device}`).toBeGreaterThan(0);
        expect(path.startsWith(mounts[0]!.target)).toBe(true);
      }
      await backend.unmount(vol);
      expect((await backend.inspect(vol)).mounted).toBe(false);
      if (device) expect((await readMountInfo()).some((m) => m.source === device)).toBe(false);
    });

    test('delete tears down a mounted and attached volume', async () => {
      const vol = newVolume();
      await backend.create(vol);
      await attachAndMount(vol);
      await backend.delete(vol);
      expect(await backend.inspect(vol)).toEqual({ exists: false, device: null, mounted: false });
      expect(await backend.listPresent()).not.toContain(vol.id);
    });

    test('listPresent lists exactly the volumes on disk', async () => {
      const a = newVolume();
      const b = newVolume();
      await backend.create(a);
      await backend.create(b);
      expect(await backend.listPresent()).toEqual([a.id, b.id].sort());
      await backend.delete(a);
      expect(await backend.listPresent()).toEqual([b.id]);
    });

    test('size is enforced exactly when declared', async () => {
      const vol = newVolume();
      await backend.create(vol);
      const path = await attachAndMount(vol);
      const code = await writeUntil(join(path, 'fill.bin'), vol.sizeBytes + 4 * MiB);
      // A device runs out of space (ENOSPC); a quota-enforced size runs out of quota (EDQUOT).
      if (backend.capabilities.sizeEnforced) expect(['ENOSPC', 'EDQUOT']).toContain(code);
      else {
        expect(code).toBeNull();
        expect(backend.describe()['sizeEnforced']).toBe(false);
      }
    });

    test('capacity reports the backing store', async () => {
      const c = await backend.capacity();
      expect(c.totalBytes).toBeGreaterThan(0);
      expect(c.availableBytes).toBeGreaterThanOrEqual(0);
      expect(c.availableBytes).toBeLessThanOrEqual(c.totalBytes);
    });

    test('stats report a mounted volume', async () => {
      const vol = newVolume();
      await backend.create(vol);
      const path = await attachAndMount(vol);
      await writeFile(join(path, 'one-mib'), randomBytes(MiB));
      const s = await backend.stats(vol);
      expect(s.abnormal).toBe(false);
      expect(s.totalBytes).toBeGreaterThan(0);
      expect(s.usedBytes).toBeGreaterThan(0);
      expect(s.usedBytes).toBeLessThanOrEqual(s.totalBytes);
      if (backend.capabilities.sizeEnforced) expect(s.totalBytes).toBeLessThanOrEqual(vol.sizeBytes);
    });

    const snapTest = (title: string, fn: (b: Backend & Snapshotting) => Promise<void>) =>
      test(title, async () => {
        if (!canSnapshot(backend)) {
          expect(backend.createSnapshot, 'createSnapshot exists exactly when declared').toBeUndefined();
          return;
        }
        await fn(backend);
      });

    snapTest('a restore from a snapshot has the data written before it, not after', async (b) => {
      const src = newVolume();
      await backend.create(src);
      const srcPath = await attachAndMount(src);
      await writeFile(join(srcPath, 'before'), 'before');
      const snap = { id: `snap-${randomVolumeId().slice(4)}`, volumeId: src.id, sizeBytes: src.sizeBytes };
      stack.defer(`delete snapshot ${snap.id}`, () => b.deleteSnapshot(snap));
      await b.createSnapshot(src, snap); // taken while mounted
      await b.createSnapshot(src, snap); // idempotent
      await writeFile(join(srcPath, 'after'), 'after');
      const restored = newVolume({ sizeBytes: src.sizeBytes, fsType: src.fsType });
      await b.createFromSnapshot(restored, snap);
      const path = await attachAndMount(restored); // mounted beside its still-mounted source
      expect(await readFile(join(path, 'before'), 'utf8')).toBe('before');
      expect(await readdir(path)).not.toContain('after');
      await b.deleteSnapshot(snap);
      await b.deleteSnapshot(snap);
      await writeFile(join(path, 'still-writable'), 'yes');
      expect(await readFile(join(path, 'before'), 'utf8')).toBe('before');
    });

    test('a clone is independent of its source', async () => {
      if (!canClone(backend)) {
        expect(backend.createFromVolume, 'createFromVolume exists exactly when declared').toBeUndefined();
        return;
      }
      const src = newVolume();
      await backend.create(src);
      const srcPath = await attachAndMount(src);
      await writeFile(join(srcPath, 'shared'), 'v1');
      const clone = newVolume({ sizeBytes: src.sizeBytes, fsType: src.fsType });
      await backend.createFromVolume(clone, src);
      const clonePath = await attachAndMount(clone);
      expect(await readFile(join(clonePath, 'shared'), 'utf8')).toBe('v1');
      await writeFile(join(clonePath, 'shared'), 'clone');
      await writeFile(join(srcPath, 'only-source'), 'x');
      expect(await readFile(join(srcPath, 'shared'), 'utf8')).toBe('v1');
      expect(await readdir(clonePath)).not.toContain('only-source');
    });

    const expandTest = (title: string, fn: (b: Backend & Expanding) => Promise<void>) =>
      test(title, async () => {
        if (!canExpand(backend)) {
          expect(backend.expand, 'expand exists exactly when declared').toBeUndefined();
          return;
        }
        await fn(backend);
      });

    expandTest('expand grows a mounted volume (online, or at the next mount when it says so)', async (b) => {
      const vol = newVolume();
      await backend.create(vol);
      const device = await attach(vol);
      let path = (await backend.mount(vol, { node: NODE, device })).path;
      await writeFile(join(path, 'kept'), 'kept');
      const before = await backend.stats(vol);
      const grown = { ...vol, sizeBytes: vol.sizeBytes * 2 };
      const outcome = await b.expand(vol, grown.sizeBytes, { mounted: true, device });
      if (outcome?.pendingFsGrowth || backend.capabilities.expansion === 'offline') {
        await unmountAndDetach(grown);
        path = await attachAndMount(grown);
      }
      const after = await backend.stats(grown);
      // Without size enforcement the stats are the shared store's: nothing to grow.
      if (backend.capabilities.sizeEnforced) expect(after.totalBytes).toBeGreaterThan(before.totalBytes);
      expect(await readFile(join(path, 'kept'), 'utf8')).toBe('kept');
      if (backend.capabilities.sizeEnforced) expect(await writeUntil(join(path, 'fill.bin'), vol.sizeBytes + 4 * MiB)).toBeNull();
    });

    expandTest('expand of an unmounted volume shows at the next mount', async (b) => {
      const vol = newVolume();
      await backend.create(vol);
      await writeFile(join(await attachAndMount(vol), 'kept'), 'kept');
      const before = await backend.stats(vol);
      await unmountAndDetach(vol);
      const grown = { ...vol, sizeBytes: vol.sizeBytes * 2 };
      await b.expand(vol, grown.sizeBytes, { mounted: false, device: null });
      const path = await attachAndMount(grown);
      if (backend.capabilities.sizeEnforced) expect((await backend.stats(grown)).totalBytes).toBeGreaterThan(before.totalBytes);
      expect(await readFile(join(path, 'kept'), 'utf8')).toBe('kept');
    });

    test('each optional method is present exactly when its capability is declared', async () => {
      // The compiler checks this for drivers (core/backend.ts); this checks what a factory built at run time.
      const has = (m: string) => typeof (backend as unknown as Record<string, unknown>)[m] === 'function';
      const c = backend.capabilities;
      expect({ attach: has('attach'), detach: has('detach') }).toEqual({ attach: c.attachable, detach: c.attachable });
      expect(['createSnapshot', 'deleteSnapshot', 'createFromSnapshot'].map(has)).toEqual([c.snapshots, c.snapshots, c.snapshots]);
      expect(has('createFromVolume')).toBe(c.clones);
      expect(has('expand')).toBe(c.expansion !== 'none');
      expect(has('fence')).toBe(c.fencing);
      expect(canFence(backend)).toBe(c.fencing);
      if (c.block) expect(c.attachable, 'block volumes need a device').toBe(true);
    });

    test('attach and mount refuse another node where the storage is local to this one', async () => {
      const vol = newVolume();
      await backend.create(vol);
      if (backend.capabilities.scope === 'global' && !canAttach(backend)) {
        expect((await backend.mount(vol, { node: 'elsewhere', device: null })).path).toBeTruthy();
        return;
      }
      if (canAttach(backend)) await expectBerthError(backend.attach(vol, { node: 'elsewhere' }), 'FailedPrecondition', 'node');
      const device = await attach(vol);
      await expectBerthError(backend.mount(vol, { node: 'elsewhere', device }), 'FailedPrecondition', 'node');
      expect((await backend.inspect(vol)).mounted).toBe(false);
    });

    test('block volumes give the raw device, bounded by the size', async () => {
      if (!backend.capabilities.block) {
        await expectBerthError(() => newVolume({ volumeMode: 'block', fsType: null }), 'InvalidArgument', 'mode');
        return;
      }
      const vol = newVolume({ volumeMode: 'block', fsType: null, sizeBytes: 8 * MiB });
      expect(vol.fsType).toBeNull();
      await backend.create(vol);
      const device = await attach(vol);
      const { path } = await backend.mount(vol, { node: NODE, device });
      expect(path).toBe(device);
      expect((await stat(path)).isBlockDevice()).toBe(true);
      expect(await writeUntil(path, MiB, { flag: 'r+', position: vol.sizeBytes - MiB })).toBeNull();
      expect(await writeUntil(path, MiB, { flag: 'r+', position: vol.sizeBytes })).toBe('ENOSPC');
      expect((await backend.inspect(vol)).mounted).toBe(false);
      await unmountAndDetach(vol);
      expect(await backend.inspect(vol)).toEqual({ exists: true, device: null, mounted: false });
    });
  });
}
