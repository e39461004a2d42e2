// Crash recovery, over both catalogs: records left in intermediate states (as a kill -9 would
// leave them) and a new service on the same SQLite file, the same catalog (embedded: that file;
// etcd: the same key prefix, the lease taken back) and the same fake "kernel" state.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, useCatalogs } from '../test/fake/catalogs.js';
import type { OpContext } from './service.js';
import type { VolumeRow } from './store/store.js';

const ctx: OpContext = { frontend: 'admin' };
const catalogs = useCatalogs();

/**
 * A volume record as the service writes it on `h`'s node: in cluster mode a volume of the
 * fake (a backend local to its node) records this node as its home.
 */
function row(h: FakeHarness, over: Partial<VolumeRow> & Pick<VolumeRow, 'id' | 'name'>): VolumeRow {
  return {
    backend: 'local', sizeBytes: 64 * 2 ** 20, fsType: 'ext4', volumeMode: 'filesystem', accessMode: 'ReadWriteOnce', labels: {},
    options: {}, sourceKind: null, sourceId: null, status: 'ready', createdAt: new Date().toISOString(),
    node: h.mode === 'etcd' ? h.nodeId : null, ...over,
  };
}

const ID_A = `vol-${'a'.repeat(26)}`;
const ID_B = `vol-${'b'.repeat(26)}`;

describe.each(CATALOGS)('reconcile after a crash (%s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('rolls back a creating volume: backend data deleted, row removed', async () => {
    await h.seed((w) => w.createVolume(row(h, { id: ID_A, name: 'half', status: 'creating' })));
    h.backend.state.volumes.set(ID_A, { sizeBytes: 1, device: null, mounted: false, filledFrom: null });
    await h.restart();
    expect(h.svc.find('half')).toBeNull();
    expect(h.backend.state.volumes.has(ID_A)).toBe(false);
    const report = await h.svc.reconcile();
    expect(report.rolledBack).toEqual([]); // idempotent: nothing left the second time
    // The name is free again.
    expect((await h.svc.create({ name: 'half' }, ctx)).status).toBe('ready');
  });

  it('rolls forward a deleting volume even while it is still mounted and attached', async () => {
    await h.seed((w) => {
      w.createVolume(row(h, { id: ID_A, name: 'gone', status: 'deleting' }));
      w.putAttachment({ volumeId: ID_A, node: 'node-1', device: '/dev/fake9', path: '/x', readOnly: false, implicit: true, createdAt: 'x' });
    });
    h.store.insertMountRef({ volumeId: ID_A, consumer: 'docker:1', frontend: 'docker', target: null, readOnly: false, state: 'committed', createdAt: 'x' });
    h.backend.state.volumes.set(ID_A, { sizeBytes: 1, device: '/dev/fake9', mounted: true, filledFrom: null });
    await h.restart();
    expect(h.svc.find(ID_A)).toBeNull();
    expect(h.backend.state.volumes.has(ID_A)).toBe(false);
    expect(h.store.listMountRefs()).toEqual([]);
    expect(h.catalog.listAttachments()).toEqual([]);
  });

  it('reports what it did', async () => {
    await h.seed((w) => {
      w.createVolume(row(h, { id: ID_A, name: 'c', status: 'creating' }));
      w.createVolume(row(h, { id: ID_B, name: 'd', status: 'deleting' }));
    });
    await h.svc.close();
    await h.restart({ closeOld: false });
    // createVolumeService already reconciled; a second pass must find nothing to do.
    const again = await h.svc.reconcile();
    expect(again).toMatchObject({ rolledBack: [], rolledForward: [], pendingRefsDropped: [], errors: [] });
  });

  it('drops a pending mount reference (caller never got success) and releases the mount it made', async () => {
    const v = await h.svc.create({ name: 'p' }, ctx);
    // Simulate a crash inside mount(): pending ref written, backend attached and mounted, no commit.
    h.store.insertMountRef({ volumeId: v.id, consumer: 'docker:1', frontend: 'docker', target: null, readOnly: false, state: 'pending', createdAt: 'x' });
    h.backend.state.volumes.get(v.id)!.device = '/dev/fake7';
    h.backend.state.volumes.get(v.id)!.mounted = true;
    await h.seed((w) => w.putAttachment({ volumeId: v.id, node: 'node-1', device: '/dev/fake7', path: '/fake/volumes/x', readOnly: false, implicit: true, createdAt: 'x' }));
    await h.restart();
    const after = await h.svc.inspect('p', ctx);
    expect(after).toMatchObject({ mounts: [], attachments: [], path: null });
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
  });

  it('keeps committed references across a restart and re-establishes lost mounts and devices', async () => {
    const v = await h.svc.create({ name: 'keep' }, ctx);
    await h.svc.mount({ ref: 'keep', consumer: 'docker:1' }, { frontend: 'docker' });
    await h.svc.mount({ ref: 'keep', consumer: 'dvdcli' }, { frontend: 'dvdcli' });
    // A reboot: the kernel forgot the loop device and the mount.
    const st = h.backend.state.volumes.get(v.id)!;
    st.device = null;
    st.mounted = false;
    await h.restart();
    const after = await h.svc.inspect('keep', ctx);
    expect(after.mounts.map((m) => m.consumer)).toEqual(['docker:1', 'dvdcli']);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: true, device: expect.any(String) });
    expect(after.attachments).toMatchObject([{ node: 'node-1', implicit: true, device: h.backend.state.volumes.get(v.id)!.device }]);
    expect(after.path).not.toBeNull();
    // And the references still count: two unmounts, the second one releases.
    await h.svc.unmount({ ref: 'keep', consumer: 'docker:1' }, ctx);
    expect(h.backend.state.volumes.get(v.id)?.mounted).toBe(true);
    await h.svc.unmount({ ref: 'keep', consumer: 'dvdcli' }, ctx);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
  });

  it('releases a mount and device with no reference (crash inside the last unmount)', async () => {
    const v = await h.svc.create({ name: 'rel' }, ctx);
    await h.svc.mount({ ref: 'rel', consumer: 'docker:1' }, ctx);
    // The last unmount's record change committed, the OS part did not happen.
    h.store.tx(() => {
      h.store.deleteMountRef(v.id, 'docker:1');
    });
    await h.restart();
    const after = await h.svc.inspect('rel', ctx);
    expect(after).toMatchObject({ mounts: [], attachments: [], path: null });
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
  });

  it('keeps an explicit attachment attached after a restart', async () => {
    const v = await h.svc.create({ name: 'att' }, ctx);
    await h.svc.attach({ ref: 'att' }, ctx);
    h.backend.state.volumes.get(v.id)!.device = null; // reboot
    await h.restart();
    const after = await h.svc.inspect('att', ctx);
    expect(after.attachments).toMatchObject([{ node: 'node-1', implicit: false }]);
    expect(h.backend.state.volumes.get(v.id)?.device).toBe(after.attachments[0]?.device);
  });

  it('releases orphans from the kernel without deleting their data', async () => {
    h.backend.state.volumes.set(ID_B, { sizeBytes: 1, device: '/dev/fake3', mounted: true, filledFrom: null });
    await h.restart();
    expect(h.backend.state.volumes.get(ID_B)).toMatchObject({ mounted: false, device: null });
    expect(h.backend.callsTo('delete')).not.toContain(ID_B);
    const report = await h.svc.reconcile();
    expect(report.orphans).toEqual([`local/${ID_B}`]);
  });

  // kill -9 at an exact point of an operation (the fake backend holds the step), then a restart.
  // In cluster mode the dead process held the volume's cluster lock: the restarted node takes
  // its lease back from the lease file, so the lock is its own again and its reconcile finishes
  // the intent at once (with a new lease it would have to wait for the old one to expire).
  const leaseOf = () => {
    const c = h.svc.status().cluster;
    return c?.mode === 'etcd' ? c.lease : null;
  };

  it('kill -9 during a create (backend create under way): the restart rolls it back and the name is free', async () => {
    const hold = h.backend.holdNext('create');
    void h.svc.create({ name: 'mid' }, ctx).catch(() => undefined);
    await hold.reached;
    const intent = h.catalog.getVolumeByName('mid');
    expect(intent?.status).toBe('creating');
    const lease = leaseOf();
    await h.restart({ closeOld: false });
    expect(leaseOf()).toBe(lease); // etcd: the same lease (embedded: none)
    expect(h.svc.find('mid')).toBeNull();
    expect(h.backend.callsTo('delete')).toEqual([intent!.id]);
    expect(h.backend.state.volumes.has(intent!.id)).toBe(false);
    const again = await h.svc.create({ name: 'mid' }, ctx);
    expect(again).toMatchObject({ status: 'ready' });
    expect(again.id).not.toBe(intent!.id);
  });

  it('kill -9 during a remove (backend delete under way): the restart finishes the remove', async () => {
    const v = await h.svc.create({ name: 'bye' }, ctx);
    const hold = h.backend.holdNext('delete');
    void h.svc.remove({ ref: 'bye' }, ctx).catch(() => undefined);
    await hold.reached;
    expect(h.catalog.getVolume(v.id)?.status).toBe('deleting');
    await h.restart({ closeOld: false });
    expect(h.svc.find(v.id)).toBeNull();
    expect(h.backend.state.volumes.has(v.id)).toBe(false);
    expect((await h.svc.reconcile()).rolledForward).toEqual([]);
  });

  it('kill -9 during a mount (device attached, mount under way): the restart drops the reference and releases the device', async () => {
    const v = await h.svc.create({ name: 'half-mounted' }, ctx);
    const hold = h.backend.holdNext('mount');
    void h.svc.mount({ ref: 'half-mounted', consumer: 'docker:1' }, ctx).catch(() => undefined);
    await hold.reached;
    expect(h.store.listMountRefs(v.id)).toMatchObject([{ consumer: 'docker:1', state: 'pending' }]);
    expect(h.backend.state.volumes.get(v.id)?.device).not.toBeNull();
    await h.restart({ closeOld: false });
    expect(await h.svc.inspect('half-mounted', ctx)).toMatchObject({ mounts: [], attachments: [], path: null });
    expect(h.store.listMountRefs(v.id)).toEqual([]);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
    // The volume is whole: a mount works.
    expect((await h.svc.mount({ ref: 'half-mounted', consumer: 'docker:1' }, ctx)).volume.mounts).toHaveLength(1);
  });

  it('finishes interrupted snapshots', async () => {
    const v = await h.svc.create({ name: 'sv' }, ctx);
    await h.seed((w) => w.createSnapshot({ id: `snap-${'c'.repeat(26)}`, name: 'half', volumeId: v.id, backend: 'local', sizeBytes: 1, fsType: null, volumeMode: 'filesystem', status: 'creating', createdAt: 'x' }));
    h.backend.state.snapshots.set(`snap-${'c'.repeat(26)}`, { id: `snap-${'c'.repeat(26)}`, volumeId: v.id, sizeBytes: 1 });
    await h.restart();
    expect(h.catalog.listSnapshots()).toEqual([]);
    expect(h.backend.state.snapshots.size).toBe(0);
  });

  it('a volume whose backend is no longer configured is reported (embedded) or left to the nodes that have it (etcd), never touched', async () => {
    await h.seed((w) => w.createVolume(row(h, { id: ID_A, name: 'lost', backend: 'removed', node: null })));
    await h.restart();
    const report = await h.svc.reconcile();
    // Differs on purpose. Embedded, every volume is this node's, so one whose backend the
    // config lost is an error to report. In cluster mode a backend is configured per node: a
    // volume on one this node lacks belongs to the nodes that have it (reconcile.ts
    // concernsThisNode), and is no error here.
    expect(report.errors).toMatchObject(h.mode === 'etcd' ? [] : [{ volume: 'lost' }]);
    expect(h.svc.find('lost')?.status).toBe('ready');
  });
});

describe.each(CATALOGS)('reconcile: volumes whose data vanished (%s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind);
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('marks them error (mount refused, remove works) and ready again when the data is back', async () => {
    const v = await h.svc.create({ name: 'lost' }, ctx);
    const saved = h.backend.state.volumes.get(v.id)!;
    h.backend.state.volumes.delete(v.id);
    await h.restart();
    expect(h.svc.find('lost')?.status).toBe('error');
    expect((await h.svc.reconcile()).missing).toEqual(['lost']);
    await expect(h.svc.mount({ ref: 'lost', consumer: 'c' }, ctx)).rejects.toMatchObject({ kind: 'FailedPrecondition' });
    h.backend.state.volumes.set(v.id, saved);
    await h.svc.reconcile();
    expect(h.svc.find('lost')?.status).toBe('ready');
    h.backend.state.volumes.delete(v.id);
    await h.svc.reconcile();
    await h.svc.remove({ ref: 'lost' }, ctx);
    expect(h.svc.find('lost')).toBeNull();
  });
});

describe.each(CATALOGS)('reconcile while serving (%s catalog)', (kind) => {
  let h: FakeHarness;
  afterEach(async () => {
    await h.cleanup();
  });

  it('periodic passes (reconcileIntervalMs) put back a mount the kernel lost', async () => {
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } }, reconcileIntervalMs: 20 });
    const v = await h.svc.create({ name: 'p' }, ctx);
    await h.svc.mount({ ref: 'p', consumer: 'c' }, ctx);
    const kernel = h.backend.state.volumes.get(v.id)!;
    expect(kernel).toMatchObject({ mounted: true });
    kernel.mounted = false; // someone unmounted it behind berth's back
    kernel.device = null;
    const deadline = Date.now() + 10_000;
    while (!(kernel.mounted && kernel.device) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(kernel).toMatchObject({ mounted: true });
    expect(kernel.device).not.toBeNull();
    expect((await h.svc.inspect('p', ctx)).mounts.map((m) => m.consumer)).toEqual(['c']);
  });

  it('skips a volume an operation holds instead of waiting for it; the next pass sees it', async () => {
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } } });
    await h.svc.create({ name: 'busy' }, ctx);
    await h.svc.create({ name: 'idle' }, ctx);
    const hold = h.backend.holdNext('attach');
    const mounting = h.svc.mount({ ref: 'busy', consumer: 'c' }, ctx);
    await hold.reached;
    const report = await h.svc.reconcile();
    expect(report.skipped).toEqual(['busy']);
    expect(report.errors).toEqual([]);
    hold.release();
    await mounting;
    const next = await h.svc.reconcile();
    expect(next.skipped).toEqual([]);
    expect(next.restored).toEqual([]); // the mount left it consistent
  });
});

describe.each(CATALOGS)('reconcile of backend objects no record accounts for (%s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind, { backends: { local: { discardsEmpty: true } } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('removes one that holds nothing (embedded: a create whose intent a power cut lost) and keeps one that holds data', async () => {
    h.backend.state.volumes.set(ID_A, { sizeBytes: 1, device: null, mounted: false, filledFrom: null });
    h.backend.state.volumes.set(ID_B, { sizeBytes: 1, device: null, mounted: false, filledFrom: null, data: true });
    const report = await h.svc.reconcile();
    // In cluster mode every intent is durable (an etcd commit): nothing empty is expected, nothing is removed.
    const embedded = kind === 'embedded';
    expect(report.emptyOrphansRemoved).toEqual(embedded ? [`local/${ID_A}`] : []);
    expect(report.orphans).toEqual(embedded ? [`local/${ID_B}`] : [`local/${ID_A}`, `local/${ID_B}`]);
    expect(h.backend.state.volumes.has(ID_A)).toBe(!embedded);
    expect(h.backend.state.volumes.get(ID_B)).toMatchObject({ data: true });
    expect(h.backend.callsTo('delete')).toEqual([]);
  });
});
