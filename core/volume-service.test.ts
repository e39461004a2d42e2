import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, untilReachable, useCatalogs } from '../test/fake/catalogs.js';
import { BerthError } from './errors.js';
import type { OpRecord } from './observe.js';
import type { OpContext } from './service.js';

const ctx: OpContext = { frontend: 'admin' };
const catalogs = useCatalogs();
const MiB = 2 ** 20;

async function errorOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a BerthError').toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe.each(CATALOGS)('volume service (fake backend, %s catalog)', (kind) => {
  let h: FakeHarness;
  const records: OpRecord[] = [];

  beforeEach(async () => {
    records.length = 0;
    h = await catalogs.harness(kind, {
      backends: { local: { capabilities: LOOP_LIKE }, plain: {} },
      observer: (r) => records.push(r),
    });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  describe('create', () => {
    it('is idempotent: same parameters -> same volume, one backend create', async () => {
      const a = await h.svc.create({ name: 'db', sizeBytes: 128 * MiB, fsType: 'xfs', labels: { team: 'x' } }, ctx);
      const b = await h.svc.create({ name: 'db', sizeBytes: 128 * MiB, fsType: 'xfs', labels: { team: 'x' } }, ctx);
      expect(b.id).toBe(a.id);
      expect(a.id).toMatch(/^vol-[0-9a-z]{26}$/);
      expect(a).toMatchObject({ backend: 'local', sizeBytes: 128 * MiB, fsType: 'xfs', status: 'ready', accessMode: 'ReadWriteOnce' });
      expect(h.backend.callsTo('create')).toEqual([a.id]);
    });

    it('fields left out do not conflict (a bare create by name returns the existing volume)', async () => {
      const a = await h.svc.create({ name: 'db', sizeBytes: 128 * MiB, fsType: 'xfs' }, ctx);
      const b = await h.svc.create({ name: 'db' }, { frontend: 'docker' });
      expect(b.id).toBe(a.id);
    });

    it.each([
      [{ sizeBytes: 256 * MiB }, 'size'],
      [{ fsType: 'ext4' as const }, 'fs'],
      [{ accessMode: 'ReadWriteMany' as const }, 'accessMode'],
      [{ backend: 'plain', fsType: undefined }, 'backend'], // fs xfs would be a bad field on plain
      [{ labels: { team: 'y' } }, 'labels'],
      [{ options: { tier: 'gold' } }, 'options'],
    ])('different parameters (%j) -> AlreadyExists naming %s', async (diff, what) => {
      await h.svc.create({ name: 'db', sizeBytes: 128 * MiB, fsType: 'xfs', labels: { team: 'x' } }, ctx);
      const err = await errorOf(h.svc.create({ name: 'db', sizeBytes: 128 * MiB, fsType: 'xfs', labels: { team: 'x' }, ...diff }, ctx));
      expect(err.kind).toBe('AlreadyExists');
      expect(err.message).toContain(what);
    });

    it('50 concurrent creates of one name produce exactly one volume', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, () => h.svc.create({ name: 'race', sizeBytes: 64 * MiB }, ctx)),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<{ id: string }>).value.id);
      expect(ok).toHaveLength(50);
      expect(new Set(ok).size).toBe(1);
      expect(h.backend.callsTo('create')).toHaveLength(1);
      expect(await h.svc.list({}, ctx)).toHaveLength(1);
    });

    it('50 concurrent creates of different names all succeed', async () => {
      const vols = await Promise.all(Array.from({ length: 50 }, (_, i) => h.svc.create({ name: `v${i}` }, ctx)));
      expect(new Set(vols.map((v) => v.id)).size).toBe(50);
      expect(h.svc.status().volumes).toBe(50);
    });

    it.each<[Record<string, unknown>, string]>([
      [{ name: '' }, 'name'],
      [{ name: '../etc' }, 'name'],
      [{ name: 'a/b' }, 'name'],
      [{ name: 'a\0b' }, 'name'],
      [{ name: 'x'.repeat(129) }, 'name'],
      [{ name: 'ok', sizeBytes: -1 }, 'size'],
      [{ name: 'ok', sizeBytes: 1.5 }, 'size'],
      [{ name: 'ok', fsType: 'ntfs' }, 'fs'],
      [{ name: 'ok', volumeMode: 'tape' }, 'mode'],
      [{ name: 'ok', accessMode: 'Sometimes' }, 'accessMode'],
      [{ name: 'ok', backend: 'nope' }, 'backend'],
      [{ name: 'ok', options: { bogus: '1' } }, 'opts.bogus'],
      [{ name: 'ok', labels: { 'bad key': '1' } }, 'labels.bad key'],
      [{ name: 'ok', backend: 'plain', fsType: 'ext4' }, 'fs'],
      [{ name: 'ok', backend: 'plain', volumeMode: 'block' }, 'mode'],
    ])('refuses %j naming field %s and changes nothing', async (req, field) => {
      const err = await errorOf(h.svc.create(req as never, ctx));
      expect(err.kind).toBe('InvalidArgument');
      expect(err.field).toBe(field);
      expect(h.svc.status().volumes).toBe(0);
      expect(h.backend.callsTo('create')).toHaveLength(0);
    });

    it('a failing backend create leaves no record and can be retried', async () => {
      h.backend.failNext('create');
      const err = await errorOf(h.svc.create({ name: 'flaky' }, ctx));
      expect(err.kind).toBe('Internal');
      expect(h.svc.find('flaky')).toBeNull();
      const v = await h.svc.create({ name: 'flaky' }, ctx);
      expect(v.status).toBe('ready');
    });

    it('records the node a volume lives on: none embedded; in cluster mode the creating node for a node-local backend', async () => {
      // Differs on purpose. Embedded there is one node: no volume is homed anywhere. In cluster
      // mode a volume of a backend local to its node (the fake's default scope) lives on the
      // node that made it; one of a shared backend (scope global) on none.
      expect((await h.svc.create({ name: 'home' }, ctx)).node).toBe(h.mode === 'etcd' ? 'node-1' : null);
      const shared = await catalogs.harness(kind, { backends: { nfs: { capabilities: { scope: 'global' } } } });
      try {
        expect((await shared.svc.create({ name: 'everywhere' }, ctx)).node).toBeNull();
      } finally {
        await shared.cleanup();
      }
    });

    it('a volume homed on another node is used there: mount, attach here, snapshot and remove are refused naming it', async () => {
      const id = `vol-${'h'.repeat(26)}`;
      await h.seed((w) => w.createVolume({
        id, name: 'theirs', backend: 'local', sizeBytes: 64 * MiB, fsType: 'ext4', volumeMode: 'filesystem', accessMode: 'ReadWriteOnce',
        labels: {}, options: {}, sourceKind: null, sourceId: null, status: 'ready', createdAt: new Date().toISOString(), node: 'node-2',
      }));
      for (const refused of [
        () => h.svc.mount({ ref: 'theirs', consumer: 'c' }, ctx),
        () => h.svc.attach({ ref: 'theirs' }, ctx),
        () => h.svc.createSnapshot({ name: 'snap', volume: 'theirs' }, ctx),
        () => h.svc.remove({ ref: 'theirs' }, ctx),
      ]) {
        expect(await errorOf(refused())).toMatchObject({ kind: 'FailedPrecondition', message: expect.stringContaining('"node-2"') });
      }
      expect(h.backend.calls.filter((c) => c.id === id && c.method !== 'inspect')).toEqual([]);
      expect(h.svc.find('theirs')).toMatchObject({ status: 'ready', node: 'node-2', mounts: [], attachments: [] });
    });

    it('applies backend defaults (size, fs) and records them', async () => {
      const v = await h.svc.create({ name: 'd' }, ctx);
      expect(v.sizeBytes).toBe(64 * MiB);
      expect(v.fsType).toBe('ext4');
      const p = await h.svc.create({ name: 'p', backend: 'plain' }, ctx);
      expect(p).toMatchObject({ sizeBytes: 0, fsType: null, backend: 'plain' });
    });
  });

  describe('inspect / find / list', () => {
    it('inspect and find take id or name; NotFound / null otherwise', async () => {
      const v = await h.svc.create({ name: 'a' }, ctx);
      expect((await h.svc.inspect(v.id, ctx)).name).toBe('a');
      expect((await h.svc.inspect('a', ctx)).id).toBe(v.id);
      expect(h.svc.find(v.id)?.name).toBe('a');
      expect(h.svc.find('a')?.id).toBe(v.id);
      expect(h.svc.find('missing')).toBeNull();
      expect((await errorOf(h.svc.inspect('missing', ctx))).kind).toBe('NotFound');
    });

    it('lists with backend and label filters', async () => {
      await h.svc.create({ name: 'a', labels: { team: 'x', env: 'prod' } }, ctx);
      await h.svc.create({ name: 'b', labels: { team: 'y' } }, ctx);
      await h.svc.create({ name: 'c', backend: 'plain', labels: { team: 'x' } }, ctx);
      expect((await h.svc.list({}, ctx)).map((v) => v.name)).toEqual(['a', 'b', 'c']);
      expect((await h.svc.list({ backend: 'plain' }, ctx)).map((v) => v.name)).toEqual(['c']);
      expect((await h.svc.list({ labels: { team: 'x' } }, ctx)).map((v) => v.name)).toEqual(['a', 'c']);
      expect((await h.svc.list({ labels: { team: 'x', env: 'prod' } }, ctx)).map((v) => v.name)).toEqual(['a']);
      expect((await h.svc.list({ backend: 'local', labels: { team: 'y' } }, ctx)).map((v) => v.name)).toEqual(['b']);
      expect(await h.svc.list({ labels: { team: 'z' } }, ctx)).toEqual([]);
      // A backend that is not configured is a mistake to name, not an empty filter.
      const unknown = await errorOf(h.svc.list({ backend: 'plian' }, ctx));
      expect([unknown.kind, unknown.field, unknown.message]).toEqual(['InvalidArgument', 'backend', expect.stringMatching(/unknown backend "plian" \(configured: .*plain/)]);
    });

    it('list and inspect work with 10,000 volumes in the catalog', async () => {
      const now = new Date().toISOString();
      // etcd takes at most 128 operations in a transaction (--max-txn-ops): commits of 50 volumes there.
      const batch = h.mode === 'etcd' ? 50 : 10_000;
      for (let from = 0; from < 10_000; from += batch) {
        await h.seed((w) => {
          for (let i = from; i < from + batch; i++) {
            w.createVolume({
              id: `vol-${String(i).padStart(26, '0')}`, name: `bulk-${i}`, backend: i % 2 ? 'local' : 'plain', sizeBytes: 0, fsType: null,
              volumeMode: 'filesystem', accessMode: 'ReadWriteOnce', labels: { i: String(i % 10) }, options: {}, sourceKind: null,
              sourceId: null, status: 'ready', createdAt: now, node: null,
            });
          }
        });
      }
      const all = await h.svc.list({}, ctx);
      expect(all).toHaveLength(10_000);
      expect(await h.svc.list({ backend: 'plain' }, ctx)).toHaveLength(5_000);
      expect(await h.svc.list({ labels: { i: '3' } }, ctx)).toHaveLength(1_000);
      for (const i of [0, 4_999, 9_999]) {
        expect((await h.svc.inspect(`bulk-${i}`, ctx)).id).toBe(`vol-${String(i).padStart(26, '0')}`);
        expect(h.svc.find(`vol-${String(i).padStart(26, '0')}`)?.name).toBe(`bulk-${i}`);
      }
      expect(h.svc.status().volumes).toBe(10_000);
    });
  });

  describe('mount / unmount', () => {
    it('counts references: only the last unmount unmounts and detaches the implicit attachment', async () => {
      const v = await h.svc.create({ name: 'm' }, ctx);
      const m1 = await h.svc.mount({ ref: 'm', consumer: 'docker:1' }, { frontend: 'docker' });
      expect(m1.existing).toBe(false);
      expect(m1.path).toBe(m1.volume.path);
      expect(m1.volume.attachments).toMatchObject([{ node: 'node-1', implicit: true }]);
      const m2 = await h.svc.mount({ ref: 'm', consumer: 'docker:2' }, { frontend: 'docker' });
      expect(m2.path).toBe(m1.path);
      const again = await h.svc.mount({ ref: 'm', consumer: 'docker:1' }, { frontend: 'docker' });
      expect(again.existing).toBe(true);
      expect(h.backend.callsTo('mount')).toEqual([v.id]);
      expect(h.backend.callsTo('attach')).toEqual([v.id]);

      const after1 = await h.svc.unmount({ ref: 'm', consumer: 'docker:1' }, ctx);
      expect(after1.mounts.map((m) => m.consumer)).toEqual(['docker:2']);
      expect(h.backend.callsTo('unmount')).toHaveLength(0);
      expect(h.backend.state.volumes.get(v.id)?.mounted).toBe(true);

      const after2 = await h.svc.unmount({ ref: 'm', consumer: 'docker:2' }, ctx);
      expect(after2).toMatchObject({ mounts: [], attachments: [], path: null });
      expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
      // Unknown consumer: no-op.
      await h.svc.unmount({ ref: 'm', consumer: 'docker:2' }, ctx);
      expect(h.backend.callsTo('unmount')).toHaveLength(1);
    });

    it('records the frontend on the reference and keeps an explicit attachment after the last unmount', async () => {
      const v = await h.svc.create({ name: 'e' }, ctx);
      const att = await h.svc.attach({ ref: 'e' }, { frontend: 'csi' });
      expect(att.attachments).toMatchObject([{ node: 'node-1', implicit: false, device: expect.any(String) }]);
      const m = await h.svc.mount({ ref: 'e', consumer: 'csi-stage:/x' }, { frontend: 'csi' });
      expect(m.volume.mounts).toMatchObject([{ consumer: 'csi-stage:/x', frontend: 'csi' }]);
      await h.svc.unmount({ ref: 'e', consumer: 'csi-stage:/x' }, ctx);
      expect(h.backend.state.volumes.get(v.id)?.device).not.toBeNull();
      const d = await h.svc.detach({ ref: 'e' }, ctx);
      expect(d.attachments).toEqual([]);
      expect(h.backend.state.volumes.get(v.id)?.device).toBeNull();
    });

    it('attach and detach are idempotent: the same attachment, one backend call each', async () => {
      const v = await h.svc.create({ name: 'ad' }, ctx);
      const a1 = await h.svc.attach({ ref: 'ad' }, { frontend: 'csi' });
      const a2 = await h.svc.attach({ ref: 'ad' }, { frontend: 'csi' });
      expect(a2.attachments).toEqual(a1.attachments);
      expect(h.backend.callsTo('attach')).toEqual([v.id]);
      await h.svc.attach({ ref: 'ad', node: 'node-2', readOnly: true }, ctx).catch(() => undefined); // RWO: refused
      expect((await h.svc.detach({ ref: 'ad' }, ctx)).attachments).toEqual([]);
      expect((await h.svc.detach({ ref: 'ad' }, ctx)).attachments).toEqual([]);
      expect(h.backend.callsTo('detach')).toEqual([v.id]);
      expect(h.backend.state.volumes.get(v.id)?.device).toBeNull();
      // A mount after an explicit attach keeps it explicit; the last unmount leaves it attached.
      await h.svc.attach({ ref: 'ad' }, ctx);
      await h.svc.mount({ ref: 'ad', consumer: 'c' }, ctx);
      expect((await h.svc.unmount({ ref: 'ad', consumer: 'c' }, ctx)).attachments).toMatchObject([{ node: 'node-1', implicit: false }]);
    });

    it('detach is refused while mounted on this node', async () => {
      await h.svc.create({ name: 'e' }, ctx);
      await h.svc.attach({ ref: 'e' }, ctx);
      await h.svc.mount({ ref: 'e', consumer: 'c1' }, ctx);
      expect((await errorOf(h.svc.detach({ ref: 'e' }, ctx))).kind).toBe('InUse');
    });

    it('a failed mount rolls back its reference and implicit attachment', async () => {
      const v = await h.svc.create({ name: 'f' }, ctx);
      h.backend.failNext('mount');
      expect((await errorOf(h.svc.mount({ ref: 'f', consumer: 'docker:1' }, ctx))).kind).toBe('Internal');
      const after = await h.svc.inspect('f', ctx);
      expect(after).toMatchObject({ mounts: [], attachments: [], path: null });
      expect(h.store.listMountRefs(v.id)).toEqual([]);
      expect(h.backend.state.volumes.get(v.id)?.device).toBeNull();
      const ok = await h.svc.mount({ ref: 'f', consumer: 'docker:1' }, ctx);
      expect(ok.volume.mounts).toHaveLength(1);
    });

    it('refuses bad mount input naming the field', async () => {
      await h.svc.create({ name: 'b' }, ctx);
      expect((await errorOf(h.svc.mount({ ref: 'b', consumer: '' }, ctx))).field).toBe('consumer');
      expect((await errorOf(h.svc.mount({ ref: 'b', consumer: 'c', target: 'relative/x' }, ctx))).field).toBe('target');
      expect((await errorOf(h.svc.mount({ ref: 'b', consumer: 'c', target: '/a/../b' }, ctx))).field).toBe('target');
      expect((await errorOf(h.svc.mount({ ref: 'b', consumer: 'c', mountFlags: ['suid'] }, ctx))).field).toBe('mountFlags[0]');
      expect((await errorOf(h.svc.mount({ ref: '', consumer: 'c' }, ctx))).field).toBe('ref');
      expect((await errorOf(h.svc.mount({ ref: 'nope', consumer: 'c' }, ctx))).kind).toBe('NotFound');
      expect((await h.svc.inspect('b', ctx)).mounts).toEqual([]);
    });

    it('mount with fsType refuses a volume of another filesystem before anything is done; a dir volume matches any', async () => {
      await h.svc.create({ name: 'fsx', fsType: 'xfs', sizeBytes: 64 * MiB }, ctx);
      const err = await errorOf(h.svc.mount({ ref: 'fsx', consumer: 'flex:/p', fsType: 'ext4' }, ctx));
      expect([err.kind, err.field]).toEqual(['InvalidArgument', 'fsType']);
      expect(err.message).toMatch(/has filesystem xfs/);
      const fsx = await h.svc.inspect('fsx', ctx);
      expect([fsx.mounts, fsx.attachments]).toEqual([[], []]);
      expect((await h.svc.mount({ ref: 'fsx', consumer: 'flex:/p', fsType: 'xfs' }, ctx)).volume.mounts).toHaveLength(1);
      await h.svc.create({ name: 'plain', backend: 'plain' }, ctx);
      expect((await h.svc.mount({ ref: 'plain', consumer: 'flex:/q', fsType: 'ext4' }, ctx)).volume.mounts).toHaveLength(1);
    });

    it('ReadWriteOnce: attaching to a second node fails naming the node holding it', async () => {
      await h.svc.create({ name: 'rwo', accessMode: 'ReadWriteOnce' }, ctx);
      await h.svc.attach({ ref: 'rwo', node: 'node-2' }, ctx);
      const err = await errorOf(h.svc.attach({ ref: 'rwo', node: 'node-3' }, ctx));
      expect(err.kind).toBe('FailedPrecondition');
      expect(err.message).toContain('node-2');
      // Attach to another node only records: no backend attach happened.
      expect(h.backend.callsTo('attach')).toHaveLength(0);
      expect((await errorOf(h.svc.mount({ ref: 'rwo', consumer: 'c' }, ctx))).kind).toBe('FailedPrecondition');
      await h.svc.detach({ ref: 'rwo', node: 'node-2' }, ctx);
      await h.svc.mount({ ref: 'rwo', consumer: 'c' }, ctx);
    });

    it('ReadWriteMany: several nodes may attach', async () => {
      await h.svc.create({ name: 'rwx', accessMode: 'ReadWriteMany' }, ctx);
      await h.svc.attach({ ref: 'rwx', node: 'node-2' }, ctx);
      const v = await h.svc.attach({ ref: 'rwx', node: 'node-3' }, ctx);
      expect(v.attachments.map((a) => a.node)).toEqual(['node-2', 'node-3']);
    });

    it('ReadWriteOncePod: one workload consumer besides csi-stage', async () => {
      await h.svc.create({ name: 'pod', accessMode: 'ReadWriteOncePod' }, ctx);
      await h.svc.mount({ ref: 'pod', consumer: 'csi-stage:/s' }, ctx);
      await h.svc.mount({ ref: 'pod', consumer: 'csi:/t1' }, ctx);
      expect((await errorOf(h.svc.mount({ ref: 'pod', consumer: 'csi:/t2' }, ctx))).kind).toBe('InUse');
      await h.svc.mount({ ref: 'pod', consumer: 'csi:/t1' }, ctx); // same consumer: idempotent
      await h.svc.unmount({ ref: 'pod', consumer: 'csi:/t1' }, ctx);
      await h.svc.mount({ ref: 'pod', consumer: 'csi:/t2' }, ctx);
    });

    it('ReadOnlyMany: references are read-only', async () => {
      await h.svc.create({ name: 'rox', accessMode: 'ReadOnlyMany' }, ctx);
      const m = await h.svc.mount({ ref: 'rox', consumer: 'c', readOnly: false }, ctx);
      expect(m.volume.mounts[0]?.readOnly).toBe(true);
    });

    it('path is the managed path while mounted, else null', async () => {
      await h.svc.create({ name: 'p' }, ctx);
      expect(await h.svc.path('p', ctx)).toBeNull();
      const m = await h.svc.mount({ ref: 'p', consumer: 'dvdcli' }, { frontend: 'dvdcli' });
      expect(await h.svc.path('p', ctx)).toBe(m.path);
    });
  });

  describe('remove', () => {
    it('is refused with InUse while mounted or attached, works with force, NotFound afterwards', async () => {
      const v = await h.svc.create({ name: 'r' }, ctx);
      await h.svc.mount({ ref: 'r', consumer: 'docker:1' }, ctx);
      const err = await errorOf(h.svc.remove({ ref: 'r' }, ctx));
      expect(err.kind).toBe('InUse');
      expect(err.message).toContain('docker:1');
      await h.svc.unmount({ ref: 'r', consumer: 'docker:1' }, ctx);
      await h.svc.attach({ ref: 'r', node: 'node-2' }, ctx);
      expect((await errorOf(h.svc.remove({ ref: 'r' }, ctx))).kind).toBe('InUse');
      await h.svc.mount({ ref: 'r', consumer: 'docker:1' }, ctx).catch(() => undefined); // RWO on node-2: refused
      if (h.mode === 'etcd') {
        // Differs on purpose. Cluster mode: node-2 is a node of its own whose kernel may hold
        // the volume, and force cannot reach there (create-ops.ts removeVolume); it is released
        // there first. Embedded, another node's attachment is a record only (a CO's
        // ControllerPublish), which force takes away.
        const refused = await errorOf(h.svc.remove({ ref: 'r', force: true }, ctx));
        expect(refused.kind).toBe('InUse');
        expect(refused.message).toContain('"node-2"');
        expect(h.backend.state.volumes.has(v.id)).toBe(true);
        await h.svc.detach({ ref: 'r', node: 'node-2' }, ctx);
      }
      await h.svc.remove({ ref: 'r', force: true }, ctx);
      expect(h.svc.find('r')).toBeNull();
      expect(h.backend.state.volumes.has(v.id)).toBe(false);
      expect((await errorOf(h.svc.remove({ ref: 'r' }, ctx))).kind).toBe('NotFound');
    });

    it('force unmounts every reference and detaches first', async () => {
      const v = await h.svc.create({ name: 'f' }, ctx);
      await h.svc.mount({ ref: 'f', consumer: 'a' }, ctx);
      await h.svc.mount({ ref: 'f', consumer: 'b' }, ctx);
      await h.svc.remove({ ref: v.id, force: true }, ctx);
      expect(h.backend.callsTo('unmount')).toEqual([v.id]);
      expect(h.backend.callsTo('detach')).toContain(v.id);
      expect(h.backend.callsTo('delete')).toEqual([v.id]);
      expect(h.store.listMountRefs()).toEqual([]);
      expect(h.store.listAttachments()).toEqual([]);
    });

    it('a failed backend delete leaves the volume deleting; a retry finishes it', async () => {
      const v = await h.svc.create({ name: 'x' }, ctx);
      h.backend.failNext('delete');
      await errorOf(h.svc.remove({ ref: 'x' }, ctx));
      expect(h.svc.find('x')?.status).toBe('deleting');
      expect((await errorOf(h.svc.mount({ ref: 'x', consumer: 'c' }, ctx))).kind).toBe('FailedPrecondition');
      await h.svc.remove({ ref: 'x' }, ctx);
      expect(h.svc.find(v.id)).toBeNull();
    });
  });

  // Racing calls on one name: each catalog serialises them per volume (embedded: the process
  // mutex; etcd: that and the cluster lock), so the outcomes are the same on both.
  describe('concurrency', () => {
    const settle = <T>(ps: Promise<T>[]) => Promise.allSettled(ps);
    const kinds = (rs: PromiseSettledResult<unknown>[]) =>
      rs.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as BerthError).kind)).sort();

    it('racing creates of one name with two sizes: one volume; its size\'s callers get it, the others AlreadyExists naming size', async () => {
      const rs = await settle(Array.from({ length: 20 }, (_, i) => h.svc.create({ name: 'race2', sizeBytes: (i % 2 ? 64 : 128) * MiB }, ctx)));
      const won = rs.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ id: string; sizeBytes: number }>;
      const size = won.value.sizeBytes;
      rs.forEach((r, i) => {
        if ((i % 2 ? 64 : 128) * MiB === size) expect(r).toMatchObject({ status: 'fulfilled', value: { id: won.value.id } });
        else expect(r).toMatchObject({ status: 'rejected', reason: { kind: 'AlreadyExists', message: expect.stringContaining('size') } });
      });
      expect(h.backend.callsTo('create')).toEqual([won.value.id]);
    });

    it('racing removes of one name: one removes it, the others find nothing', async () => {
      const v = await h.svc.create({ name: 'gone' }, ctx);
      const rs = await settle(Array.from({ length: 20 }, () => h.svc.remove({ ref: 'gone' }, ctx)));
      expect(kinds(rs)).toEqual([...Array<string>(19).fill('NotFound'), 'ok']);
      expect(h.backend.callsTo('delete')).toEqual([v.id]);
      expect(h.svc.find('gone')).toBeNull();
      expect(await h.svc.list({}, ctx)).toEqual([]);
    });

    it('racing mounts by 20 consumers: one attach and one mount, 20 references; racing unmounts release it once', async () => {
      const v = await h.svc.create({ name: 'shared' }, ctx);
      const consumers = Array.from({ length: 20 }, (_, i) => `docker:${i}`);
      const mounted = await Promise.all(consumers.map((consumer) => h.svc.mount({ ref: 'shared', consumer }, ctx)));
      expect(new Set(mounted.map((m) => m.path)).size).toBe(1);
      expect(mounted.filter((m) => !m.existing)).toHaveLength(20);
      expect(h.backend.callsTo('attach')).toEqual([v.id]);
      expect(h.backend.callsTo('mount')).toEqual([v.id]);
      const seen = await h.svc.inspect('shared', ctx);
      expect(seen.mounts.map((m) => m.consumer).sort()).toEqual([...consumers].sort());
      expect(seen.attachments).toMatchObject([{ node: 'node-1', implicit: true }]);
      await Promise.all(consumers.map((consumer) => h.svc.unmount({ ref: 'shared', consumer }, ctx)));
      expect(h.backend.callsTo('unmount')).toEqual([v.id]);
      expect(h.backend.callsTo('detach')).toEqual([v.id]);
      expect(await h.svc.inspect('shared', ctx)).toMatchObject({ mounts: [], attachments: [], path: null });
      expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
    });

    it('a mount racing a remove: exactly one of them wins, and the records and the backend agree', async () => {
      for (let round = 0; round < 5; round++) {
        const name = `mr${round}`;
        const v = await h.svc.create({ name }, ctx);
        const [m, r] = await settle<unknown>([h.svc.mount({ ref: name, consumer: 'c' }, ctx), h.svc.remove({ ref: name }, ctx)]);
        if (m!.status === 'fulfilled') {
          // The mount came first: the remove is refused while it is mounted.
          expect(r).toMatchObject({ status: 'rejected', reason: { kind: 'InUse' } });
          expect(h.svc.find(name)).toMatchObject({ status: 'ready', mounts: [{ consumer: 'c' }] });
          expect(h.backend.state.volumes.get(v.id)?.mounted).toBe(true);
        } else {
          expect(r!.status).toBe('fulfilled');
          expect(m).toMatchObject({ status: 'rejected', reason: { kind: 'NotFound' } });
          expect(h.svc.find(name)).toBeNull();
          expect(h.backend.state.volumes.has(v.id)).toBe(false);
        }
      }
    });

    it('racing attaches of a ReadWriteOnce volume to two nodes: one holds it, the other is refused naming the holder', async () => {
      await h.svc.create({ name: 'rwo' }, ctx);
      const rs = await settle(['node-2', 'node-3'].flatMap((node) => [h.svc.attach({ ref: 'rwo', node }, ctx), h.svc.attach({ ref: 'rwo', node }, ctx)]));
      const holders = new Set((await h.svc.inspect('rwo', ctx)).attachments.map((a) => a.node));
      expect(holders.size).toBe(1);
      const holder = [...holders][0]!;
      expect(kinds(rs)).toEqual(['FailedPrecondition', 'FailedPrecondition', 'ok', 'ok']);
      for (const r of rs) if (r.status === 'rejected') expect((r.reason as BerthError).message).toContain(`"${holder}"`);
    });

    it('racing snapshots of one name: one snapshot', async () => {
      await h.svc.create({ name: 'src' }, ctx);
      const snaps = await Promise.all(Array.from({ length: 20 }, () => h.svc.createSnapshot({ name: 's1', volume: 'src' }, ctx)));
      expect(new Set(snaps.map((s) => s.id)).size).toBe(1);
      expect(h.backend.callsTo('createSnapshot')).toHaveLength(1);
      expect(await h.svc.listSnapshots({}, ctx)).toHaveLength(1);
    });
  });

  describe('serialization', () => {
    it('wait:false gets Busy while another operation holds the volume', async () => {
      await h.svc.create({ name: 's' }, ctx);
      const hold = h.backend.holdNext('mount');
      const mounting = h.svc.mount({ ref: 's', consumer: 'c1' }, ctx);
      await hold.reached;
      const err = await errorOf(h.svc.unmount({ ref: 's', consumer: 'c1' }, { frontend: 'csi', wait: false }));
      expect(err.kind).toBe('Busy');
      // Another volume is not blocked.
      await h.svc.create({ name: 'other' }, { frontend: 'csi', wait: false });
      hold.release();
      await mounting;
      expect((await h.svc.inspect('s', ctx)).mounts).toHaveLength(1);
    });

    it('a waiting operation runs after the holder and sees its result', async () => {
      await h.svc.create({ name: 's' }, ctx);
      const hold = h.backend.holdNext('mount');
      const mounting = h.svc.mount({ ref: 's', consumer: 'c1' }, ctx);
      await hold.reached;
      const removing = h.svc.remove({ ref: 's' }, ctx);
      hold.release();
      await mounting;
      expect((await errorOf(removing)).kind).toBe('InUse');
    });

    it('bounded wait ends in Busy', async () => {
      const quick = await catalogs.harness(kind, { lockWaitMs: 50 });
      try {
        await quick.svc.create({ name: 's' }, ctx);
        const hold = quick.backend.holdNext('mount');
        const mounting = quick.svc.mount({ ref: 's', consumer: 'c1' }, ctx);
        await hold.reached;
        expect((await errorOf(quick.svc.remove({ ref: 's' }, ctx))).kind).toBe('Busy');
        hold.release();
        await mounting;
      } finally {
        await quick.cleanup();
      }
    });
  });

  describe('snapshots, clones, expand', () => {
    it('snapshot create is idempotent by name; other volume -> AlreadyExists; restore and delete', async () => {
      const v = await h.svc.create({ name: 'src', sizeBytes: 64 * MiB }, ctx);
      const s1 = await h.svc.createSnapshot({ name: 'snap1', volume: 'src' }, ctx);
      const s2 = await h.svc.createSnapshot({ name: 'snap1', volume: v.id }, ctx);
      expect(s2.id).toBe(s1.id);
      expect(s1).toMatchObject({ volumeId: v.id, backend: 'local', sizeBytes: 64 * MiB, readyToUse: true });
      expect(s1.id).toMatch(/^snap-[0-9a-z]{26}$/);
      await h.svc.create({ name: 'other' }, ctx);
      expect((await errorOf(h.svc.createSnapshot({ name: 'snap1', volume: 'other' }, ctx))).kind).toBe('AlreadyExists');
      expect(h.backend.callsTo('createSnapshot')).toEqual([s1.id]);

      const restored = await h.svc.create({ name: 'restored', source: { kind: 'snapshot', ref: 'snap1' } }, ctx);
      expect(restored).toMatchObject({ sizeBytes: 64 * MiB, source: { kind: 'snapshot', id: s1.id } });
      expect(h.backend.state.volumes.get(restored.id)?.filledFrom).toBe(s1.id);
      expect((await errorOf(h.svc.create({ name: 'small', sizeBytes: MiB, source: { kind: 'snapshot', ref: 'snap1' } }, ctx))).kind).toBe('OutOfRange');

      expect((await h.svc.listSnapshots({ volume: 'src' }, ctx)).map((s) => s.name)).toEqual(['snap1']);
      expect(await h.svc.listSnapshots({ volume: 'other' }, ctx)).toEqual([]);
      expect((await h.svc.inspectSnapshot('snap1', ctx)).id).toBe(s1.id);
      await h.svc.deleteSnapshot(s1.id, ctx);
      expect((await errorOf(h.svc.inspectSnapshot('snap1', ctx))).kind).toBe('NotFound');
      expect(h.backend.state.snapshots.size).toBe(0);
    });

    it('clones a volume', async () => {
      const v = await h.svc.create({ name: 'src' }, ctx);
      const c = await h.svc.create({ name: 'clone', source: { kind: 'volume', ref: 'src' } }, ctx);
      expect(c.source).toEqual({ kind: 'volume', id: v.id });
      expect(h.backend.state.volumes.get(c.id)?.filledFrom).toBe(v.id);
      const again = await h.svc.create({ name: 'clone', source: { kind: 'volume', ref: v.id } }, ctx);
      expect(again.id).toBe(c.id);
    });

    it('backends without the capability answer Unsupported', async () => {
      await h.svc.create({ name: 'p', backend: 'plain' }, ctx);
      expect((await errorOf(h.svc.createSnapshot({ name: 's', volume: 'p' }, ctx))).kind).toBe('Unsupported');
      expect((await errorOf(h.svc.expand({ ref: 'p', sizeBytes: 2 * MiB }, ctx))).kind).toBe('Unsupported');
      expect((await errorOf(h.svc.create({ name: 'c', backend: 'plain', source: { kind: 'volume', ref: 'p' } }, ctx))).kind).toBe('Unsupported');
    });

    it('expands, refuses shrinking, and is idempotent at the same size', async () => {
      const v = await h.svc.create({ name: 'g', sizeBytes: 64 * MiB }, ctx);
      const r = await h.svc.expand({ ref: 'g', sizeBytes: 128 * MiB }, ctx);
      expect(r).toMatchObject({ pendingFsGrowth: false, volume: { sizeBytes: 128 * MiB } });
      expect(h.backend.state.volumes.get(v.id)?.sizeBytes).toBe(128 * MiB);
      await h.svc.expand({ ref: 'g', sizeBytes: 128 * MiB }, ctx);
      expect(h.backend.callsTo('expand')).toHaveLength(1);
      const err = await errorOf(h.svc.expand({ ref: 'g', sizeBytes: 32 * MiB }, ctx));
      expect(err).toMatchObject({ kind: 'OutOfRange', field: 'size' });
    });
  });

  describe('observability and misc', () => {
    it('emits one OpRecord per call with frontend, op, volume and outcome', async () => {
      await h.svc.create({ name: 'o' }, { frontend: 'docker' });
      await h.svc.inspect('missing', ctx).catch(() => undefined);
      expect(records).toEqual([
        expect.objectContaining({ frontend: 'docker', op: 'create', volume: 'o', outcome: 'ok', durationMs: expect.any(Number) }),
        expect.objectContaining({ frontend: 'admin', op: 'inspect', volume: 'missing', outcome: 'NotFound' }),
      ]);
    });

    it('reports backends, capacity and status', async () => {
      expect(h.svc.backends().map((b) => [b.name, b.driver, b.capabilities.attachable])).toEqual([
        ['local', 'fake', true],
        ['plain', 'fake', false],
      ]);
      const cap = await h.svc.capacity(undefined, ctx);
      expect(cap.map((c) => c.backend)).toEqual(['local', 'plain']);
      expect((await errorOf(h.svc.capacity('nope', ctx))).kind).toBe('NotFound');
      expect(h.svc.status()).toMatchObject({ version: 'test', nodeId: 'node-1', ready: true, volumes: 0, backends: ['local', 'plain'] });
      expect(h.svc.nodeId).toBe('node-1');
    });

    it('stats come from the backend', async () => {
      await h.svc.create({ name: 's', sizeBytes: 64 * MiB }, ctx);
      expect((await h.svc.stats('s', ctx)).totalBytes).toBe(64 * MiB);
    });

    it('operations after close are refused', async () => {
      await h.svc.close();
      expect((await errorOf(h.svc.create({ name: 'late' }, ctx))).kind).toBe('FailedPrecondition');
    });
  });
});

describe.each(CATALOGS)('volume service: expand outcome and copy progress (%s catalog)', (kind) => {
  let h: FakeHarness;
  afterEach(async () => {
    await h.cleanup();
  });

  it('takes pendingFsGrowth from the backend when expand reports it, else from capabilities', async () => {
    h = await catalogs.harness(kind, {
      backends: {
        ext4ish: { capabilities: { ...LOOP_LIKE, expansion: 'online' }, expandOutcome: (st) => ({ pendingFsGrowth: st.mounted }) },
        offline: { capabilities: { ...LOOP_LIKE, expansion: 'offline' } },
      },
    });
    await h.svc.create({ name: 'a', sizeBytes: 64 * MiB }, ctx);
    await h.svc.mount({ ref: 'a', consumer: 'c' }, ctx);
    expect((await h.svc.expand({ ref: 'a', sizeBytes: 128 * MiB }, ctx)).pendingFsGrowth).toBe(true);
    await h.svc.unmount({ ref: 'a', consumer: 'c' }, ctx);
    expect((await h.svc.expand({ ref: 'a', sizeBytes: 256 * MiB }, ctx)).pendingFsGrowth).toBe(false);
    await h.svc.create({ name: 'b', backend: 'offline', sizeBytes: 64 * MiB }, ctx);
    await h.svc.mount({ ref: 'b', consumer: 'c' }, ctx);
    expect((await h.svc.expand({ ref: 'b', sizeBytes: 128 * MiB }, ctx)).pendingFsGrowth).toBe(true);
  });

  it('passes copy progress to the caller, and a throwing callback does not fail the create', async () => {
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } } });
    await h.svc.create({ name: 'src', sizeBytes: 64 * MiB }, ctx);
    const seen: number[] = [];
    await h.svc.create({ name: 'c1', source: { kind: 'volume', ref: 'src' } }, { frontend: 'admin', onProgress: (done) => seen.push(done) });
    expect(seen).toEqual([64 * MiB]);
    const c2 = await h.svc.create({ name: 'c2', source: { kind: 'volume', ref: 'src' } }, {
      frontend: 'admin',
      onProgress: () => {
        throw new Error('broken progress bar');
      },
    });
    expect(c2.status).toBe('ready');
  });
});

describe.each(CATALOGS)('volume service: structured log lines (%s catalog)', (kind) => {
  it('writes one line per operation with frontend, op, volume, durationMs and outcome', async () => {
    const { Writable } = await import('node:stream');
    const { createLogger } = await import('./log.js');
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const h = await catalogs.harness(kind, { log: createLogger({ level: 'info', destination: sink }) });
    try {
      await h.svc.create({ name: 'logged' }, { frontend: 'docker' });
      await h.svc.remove({ ref: 'nope' }, { frontend: 'csi' }).catch(() => undefined);
      const ops = lines.filter((l) => l['op'] === 'create' || l['op'] === 'remove');
      expect(ops).toEqual([
        expect.objectContaining({ frontend: 'docker', op: 'create', volume: 'logged', outcome: 'ok', durationMs: expect.any(Number) }),
        expect.objectContaining({ frontend: 'csi', op: 'remove', volume: 'nope', outcome: 'NotFound', error: expect.stringContaining('nope') }),
      ]);
      expect(lines.some((l) => l['op'] === 'reconcile')).toBe(true);

      // A megabyte of ref costs a clipped line (issue 9: 2 MB log lines).
      lines.length = 0;
      const huge = `x\n${'v'.repeat(1_000_000)}`;
      await h.svc.inspect(huge, { frontend: 'admin' }).catch(() => undefined);
      await h.svc.create({ name: huge }, { frontend: 'docker' }).catch(() => undefined);
      const clipped = lines.filter((l) => l['op'] === 'inspect' || l['op'] === 'create');
      expect(clipped).toEqual([
        expect.objectContaining({ op: 'inspect', volume: expect.stringMatching(/^x\\x0av+\.\.\.\(\d+ more characters\)$/), outcome: 'InvalidArgument' }),
        expect.objectContaining({ op: 'create', outcome: 'InvalidArgument' }),
      ]);
      for (const l of clipped) expect(JSON.stringify(l).length).toBeLessThan(2048);
    } finally {
      await h.cleanup();
    }
  });
});

describe.each(CATALOGS)('volume service: shared views of idle volumes (%s catalog)', (kind) => {
  it('hands out one frozen view per stored row and a new one as soon as anything changes', async () => {
    const h = await catalogs.harness(kind, { backends: { local: { capabilities: { expansion: 'online' } } } });
    try {
      const c = { frontend: 'admin' as const };
      await h.svc.create({ name: 'idle', labels: { team: 'a' } }, c);
      const first = (await h.svc.list({}, c))[0]!;
      expect(Object.isFrozen(first)).toBe(true);
      expect((await h.svc.list({}, c))[0]).toBe(first); // nothing changed: the same object
      expect(h.svc.find('idle')).toBe(first);
      await h.svc.mount({ ref: 'idle', consumer: 'docker:1' }, c);
      const mounted = (await h.svc.list({}, c))[0]!;
      expect(mounted.mounts.map((m) => m.consumer)).toEqual(['docker:1']);
      expect(mounted.path).not.toBeNull();
      await h.svc.unmount({ ref: 'idle', consumer: 'docker:1' }, c);
      const again = (await h.svc.list({ labels: { team: 'a' } }, c))[0]!;
      expect(again).toMatchObject({ mounts: [], attachments: [], path: null, labels: { team: 'a' } });
      await h.svc.expand({ ref: 'idle', sizeBytes: 1024 }, c);
      expect((await h.svc.inspect('idle', c)).sizeBytes).toBe(1024);
    } finally {
      await h.cleanup();
    }
  });
});

// Cluster mode only: the embedded catalog is this node's own file, which cannot go away
// while the daemon runs; etcd can (docs/architecture.md, "Unavailable").
describe('volume service while etcd is away (etcd catalog)', () => {
  it('fails fast with Unavailable naming the endpoint, touches no backend, answers find() from its view, and heals without a restart', async () => {
    const etcd = await catalogs.etcd();
    const h = await catalogs.harness('etcd', { backends: { local: { capabilities: LOOP_LIKE } } });
    try {
      const v = await h.svc.create({ name: 'kept' }, ctx);
      h.backend.resetCalls();
      await etcd.stop('SIGKILL');
      try {
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['create', () => h.svc.create({ name: 'new' }, ctx)],
          ['mount', () => h.svc.mount({ ref: 'kept', consumer: 'c' }, ctx)],
          ['attach', () => h.svc.attach({ ref: 'kept' }, ctx)],
          ['remove', () => h.svc.remove({ ref: 'kept' }, ctx)],
          ['inspect', () => h.svc.inspect('kept', ctx)],
          ['list', () => h.svc.list({}, ctx)],
        ];
        for (const [what, call] of calls) {
          const started = Date.now();
          const err = await errorOf(call());
          expect([what, err.kind], err.message).toEqual([what, 'Unavailable']);
          expect(err.message).toContain(etcd.endpoint);
          expect(Date.now() - started, what).toBeLessThan(10_000);
        }
        // Nothing half done: no backend step, no reference, the record as it was.
        expect(h.backend.calls.filter((c) => c.method !== 'inspect' && c.method !== 'listPresent')).toEqual([]);
        expect(h.store.listMountRefs()).toEqual([]);
        expect(h.svc.find('kept')).toMatchObject({ id: v.id, status: 'ready', mounts: [], attachments: [] });
      } finally {
        await etcd.start();
      }
      await untilReachable(h);
      expect((await h.svc.mount({ ref: 'kept', consumer: 'c' }, ctx)).volume.mounts).toHaveLength(1);
      expect((await h.svc.create({ name: 'new' }, ctx)).status).toBe('ready');
    } finally {
      await h.cleanup();
    }
  });
});
