import { describe, expect, it } from 'vitest';
import { chown, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createExec } from '../../core/os/exec.js';
import { createSilentLogger } from '../../core/log.js';
import { BerthError } from '../../core/errors.js';
import { runBackendConformance } from '../../test/conformance/backend.case.js';
import { createDirBackend } from './dir.js';

/** The node these backends run as (BackendContext.node): attach and mount act for it. */
const NODE = 'test-node';

const ctx = (stateRoot: string, settings: Record<string, unknown> = {}) => ({
  name: 'local',
  settings,
  stateRoot,
  node: NODE,
  exec: createExec(),
  log: createSilentLogger(),
});

runBackendConformance({ name: 'dir', makeBackend: async (root, node) => createDirBackend({ ...ctx(root), node }) });

describe('dir backend settings and specifics', () => {
  it('defaults its root under <stateRoot>/backends/<instance> and creates it', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dir-'));
    try {
      const b = await createDirBackend(ctx(root));
      expect(b.describe()).toMatchObject({ root: join(root, 'backends', 'local'), sizeEnforced: false });
      expect((await stat(join(root, 'backends', 'local'))).isDirectory()).toBe(true);
      expect(b.capabilities.sizeEnforced).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('names a bad setting as backends.<instance>.<key>', async () => {
    await expect(createDirBackend(ctx('/tmp', { rooot: '/x' }))).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'backends.local.rooot' });
    await expect(createDirBackend(ctx('/tmp', { root: 'relative/path' }))).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'backends.local.root' });
  });

  it('refuses a filesystem type, block mode and options, naming the field', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dir-'));
    try {
      const b = await createDirBackend(ctx(root));
      const spec = { sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const, options: {} };
      expect(b.validateCreate(spec)).toEqual(spec);
      for (const [bad, field] of [
        [{ fsType: 'xfs' as const }, 'fs'],
        [{ volumeMode: 'block' as const }, 'mode'],
        [{ options: { size2: '1' } }, 'opts.size2'],
      ] as const) {
        let err: unknown;
        try {
          b.validateCreate({ ...spec, ...bad });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(BerthError);
        expect((err as BerthError).field).toBe(field);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('delete takes the tree away at once and removes it in the background; a restart empties what a crash left', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dir-'));
    const until = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const base = join(root, 'backends', 'local');
    const trash = join(base, '.trash');
    try {
      const b = await createDirBackend(ctx(root));
      const vol = { id: 'vol-0123456789abcdefghjkmnpqrs', name: 'v', sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const, options: {} };
      await b.create(vol);
      const { path } = await b.mount(vol, { node: NODE, device: null });
      for (let i = 0; i < 50; i++) await mkdir(join(path, `d${i}`, 'deeper'), { recursive: true });
      await mkdir(`${path}.partial`); // a copy a crash interrupted
      await b.delete(vol);
      await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(stat(`${path}.partial`)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await b.listPresent()).toEqual([]);
      await until('the trash to empty', async () => (await readdir(trash)).length === 0);
      await b.delete(vol); // idempotent
      // A crash between the rename and the background removal: the next start finishes it.
      await mkdir(join(trash, 'vol-left-behind-1234', 'sub'), { recursive: true });
      await createDirBackend(ctx(root));
      await until('the leftover to go', async () => (await readdir(trash)).length === 0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('discardIfEmpty removes a volume directory that holds nothing, and nothing else', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dir-'));
    try {
      const b = await createDirBackend(ctx(root));
      const vol = (c: string) => ({ id: `vol-${c.repeat(26)}`, name: c, sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const, options: {} });
      const [empty, full, hidden, gone] = [vol('a'), vol('b'), vol('c'), vol('d')];
      for (const v of [empty, full, hidden]) await b.create(v);
      await writeFile(join((await b.mount(full, { node: NODE, device: null })).path, 'data'), 'x');
      await writeFile(join((await b.mount(hidden, { node: NODE, device: null })).path, '.x'), '');
      expect(b.discardIfEmpty).toBeTypeOf('function');
      const discard = (v: typeof empty) => b.discardIfEmpty!(v);
      expect(await discard(empty)).toBe(true);
      expect(await discard(full)).toBe(false);
      expect(await discard(hidden)).toBe(false);
      expect(await discard(gone)).toBe(false);
      expect(await b.listPresent()).toEqual([full.id, hidden.id]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('snapshots copy the tree with modes and owners, keep a finished copy, and replace a torn one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dir-'));
    try {
      const b = await createDirBackend(ctx(root));
      const vol = { id: 'vol-0123456789abcdefghjkmnpqrs', name: 'v', sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const, options: {} };
      await b.create(vol);
      const { path } = await b.mount(vol, { node: NODE, device: null });
      await mkdir(join(path, 'sub'));
      await writeFile(join(path, 'sub', 'secret'), 'x', { mode: 0o600 });
      await chown(join(path, 'sub', 'secret'), 1234, 5678);
      const snap = { id: 'snap-0123456789abcdefghjkmnpqrs', volumeId: vol.id, sizeBytes: 0 };
      await mkdir(join(root, 'backends', 'local', 'snapshots', `${snap.id}.partial`)); // a crash mid-copy
      await b.createSnapshot!(vol, snap);
      const copied = await stat(join(root, 'backends', 'local', 'snapshots', snap.id, 'sub', 'secret'));
      expect({ mode: copied.mode & 0o777, uid: copied.uid, gid: copied.gid }).toEqual({ mode: 0o600, uid: 1234, gid: 5678 });
      await writeFile(join(path, 'later'), 'y');
      await b.createSnapshot!(vol, snap); // already there: kept as it was
      const restored = { ...vol, id: 'vol-1123456789abcdefghjkmnpqrs' };
      await b.createFromSnapshot!(restored, snap);
      expect((await readdir((await b.mount(restored, { node: NODE, device: null })).path)).sort()).toEqual(['sub']);
      expect(await b.listPresent()).toEqual([vol.id, restored.id]);
      expect(await b.expand!(vol, 10 * 1024 ** 3, { mounted: true, device: null })).toEqual({ pendingFsGrowth: false });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
