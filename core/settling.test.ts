// A full state disk at the worst moment, with the fake backend and a real SQLite store whose
// writes are made to fail on cue: records and the kernel (the fake backend's state) must end
// up agreeing, and no call may answer a path the kernel does not show.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, untilReachable, useCatalogs } from '../test/fake/catalogs.js';
import { BerthError, resourceExhausted } from './errors.js';
import type { OpContext } from './service.js';
import type { Store } from './store/store.js';

const ctx: OpContext = { frontend: 'admin' };
const catalogs = useCatalogs();

async function errorOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err, 'expected a BerthError').toBeInstanceOf(BerthError);
  return err as BerthError;
}

/** Makes the next `n` transactions (and single writes) of the store fail as a full disk would. */
function failWrites(store: Store): { next(n: number): void; failed(): number } {
  let left = 0;
  let failed = 0;
  const full = () => resourceExhausted('the state database /x/state.db cannot be written: the filesystem holding it is full (SQLITE_FULL)');
  const wrap = <K extends 'tx' | 'deleteMountRef' | 'updateVolume' | 'putAttachment' | 'deleteAttachment'>(k: K) => {
    const orig = store[k].bind(store) as (...a: unknown[]) => unknown;
    (store as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => {
      if (left > 0) {
        left--;
        failed++;
        throw full();
      }
      return orig(...a);
    };
  };
  for (const k of ['tx', 'deleteMountRef', 'updateVolume', 'putAttachment', 'deleteAttachment'] as const) wrap(k);
  return { next: (n) => (left = n), failed: () => failed };
}

describe.each(CATALOGS)('a full state disk (fake backend, real SQLite, %s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind, { backends: { local: { capabilities: LOOP_LIKE } } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('an unmount whose record cannot be written puts the kernel back as recorded and says ResourceExhausted', async () => {
    const v = await h.svc.create({ name: 'u' }, ctx);
    const m = await h.svc.mount({ ref: 'u', consumer: 'c1' }, ctx);
    const writes = failWrites(h.store);
    writes.next(1);
    const err = await errorOf(h.svc.unmount({ ref: 'u', consumer: 'c1' }, ctx));
    expect(err.kind).toBe('ResourceExhausted');
    expect(writes.failed()).toBe(1);
    // The kernel had been released (unmount, detach) before the write; it is back now.
    expect(h.backend.callsTo('unmount')).toEqual([v.id]);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: true, device: expect.any(String) });
    expect(h.svc.find('u')).toMatchObject({ path: m.path, mounts: [{ consumer: 'c1' }] });
    expect(await h.svc.path('u', ctx)).toBe(m.path);
    // Space is back: the retry finishes the job.
    await h.svc.unmount({ ref: 'u', consumer: 'c1' }, ctx);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false, device: null });
    expect(h.svc.find('u')).toMatchObject({ path: null, mounts: [], attachments: [] });
  });

  it('a volume that cannot be settled yet is settled before its path or its next mount is answered', async () => {
    const v = await h.svc.create({ name: 's' }, ctx);
    const m = await h.svc.mount({ ref: 's', consumer: 'c1' }, ctx);
    const writes = failWrites(h.store);
    // The unmount's record, then the settle's own write (the re-attached device differs).
    h.backend.failNext('attach', resourceExhausted('no loop device'));
    writes.next(1);
    expect((await errorOf(h.svc.unmount({ ref: 's', consumer: 'c1' }, ctx))).kind).toBe('ResourceExhausted');
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: false });
    // Not answered from the stale record: settled first (the kernel is back), then answered.
    expect(await h.svc.path('s', ctx)).toBe(m.path);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: true });
    const again = await h.svc.mount({ ref: 's', consumer: 'c1' }, ctx);
    expect(again).toMatchObject({ existing: true, path: m.path });
  });

  it('a retried mount whose mount the kernel lost is re-established before its path is answered', async () => {
    const v = await h.svc.create({ name: 'r' }, ctx);
    const m = await h.svc.mount({ ref: 'r', consumer: 'c1' }, ctx);
    h.backend.state.volumes.get(v.id)!.mounted = false; // e.g. umount by hand
    const again = await h.svc.mount({ ref: 'r', consumer: 'c1' }, ctx);
    expect(again).toMatchObject({ existing: true, path: m.path });
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: true });
    expect(h.backend.callsTo('mount')).toEqual([v.id, v.id]);
  });

  it('a forced remove whose records cannot be written keeps every reference: the node\'s writes of one step are one transaction', async () => {
    const v = await h.svc.create({ name: 'two' }, ctx);
    const m = await h.svc.mount({ ref: 'two', consumer: 'a' }, ctx);
    await h.svc.mount({ ref: 'two', consumer: 'b' }, ctx);
    // The step that takes the volume off this node deletes both references; the second
    // deletion hits the full disk, after the first one went through.
    const orig = h.store.deleteMountRef.bind(h.store);
    let once = true;
    h.store.deleteMountRef = (volumeId, consumer) => {
      if (once && consumer === 'b') {
        once = false;
        throw resourceExhausted('the state database /x/state.db cannot be written: the filesystem holding it is full (SQLITE_FULL)');
      }
      orig(volumeId, consumer);
    };
    expect((await errorOf(h.svc.remove({ ref: 'two', force: true }, ctx))).kind).toBe('ResourceExhausted');
    // Neither reference was lost; the kernel was put back for both, and the volume stays.
    expect(h.store.listMountRefs(v.id).map((r) => [r.consumer, r.state])).toEqual([['a', 'committed'], ['b', 'committed']]);
    expect(h.backend.state.volumes.get(v.id)).toMatchObject({ mounted: true, device: expect.any(String) });
    expect(h.svc.find('two')).toMatchObject({ status: 'ready', path: m.path, mounts: [{ consumer: 'a' }, { consumer: 'b' }] });
    // Space is back: the remove goes through.
    await h.svc.remove({ ref: 'two', force: true }, ctx);
    expect(h.svc.find('two')).toBeNull();
    expect(h.store.listMountRefs(v.id)).toEqual([]);
  });

  it('create, mount and attach are refused before anything happens when the records might not fit', async () => {
    await h.svc.create({ name: 'a' }, ctx);
    const full = resourceExhausted('the filesystem holding the state root /x is full');
    h.store.ensureHeadroom = () => {
      throw full;
    };
    h.backend.resetCalls();
    expect(await errorOf(h.svc.create({ name: 'b' }, ctx))).toBe(full);
    expect(await errorOf(h.svc.mount({ ref: 'a', consumer: 'c1' }, ctx))).toBe(full);
    expect(await errorOf(h.svc.attach({ ref: 'a' }, ctx))).toBe(full);
    expect(h.backend.calls.filter((c) => c.method !== 'inspect')).toEqual([]);
    expect(h.svc.find('b')).toBeNull();
    expect(h.svc.find('a')).toMatchObject({ mounts: [], attachments: [] });
  });

  it('a create whose final record cannot be written is never ready, and is rolled back', async () => {
    if (h.mode === 'etcd') {
      // Differs on purpose. In cluster mode the record goes to etcd, not to this node's
      // SQLite; the write that fails there is etcd's, gone away (kill -9 of etcd here, as a
      // real outage). The caller is told Unavailable naming the endpoint. The roll-back cannot
      // be written while etcd is away either, so the intent stays 'creating' (never ready:
      // nobody can mount it) for the reconcile that runs once etcd is back. Embedded, below,
      // the full disk lets the roll-back through at once (settling.ts).
      const etcd = await catalogs.etcd();
      const hold = h.backend.holdNext('create');
      const creating = errorOf(h.svc.create({ name: 'c' }, ctx));
      await hold.reached;
      await etcd.stop('SIGKILL');
      try {
        hold.release();
        const err = await creating;
        expect(err.kind).toBe('Unavailable');
        expect(err.message).toContain(etcd.endpoint);
        expect(h.svc.find('c')?.status).toBe('creating');
      } finally {
        await etcd.start();
      }
      await untilReachable(h);
      expect((await h.svc.reconcile()).rolledBack).toEqual(['c']);
      expect(h.svc.find('c')).toBeNull();
      expect(h.backend.state.volumes.size).toBe(0);
      expect((await h.svc.create({ name: 'c' }, ctx)).status).toBe('ready');
      return;
    }
    // insertVolume, backend create, then updateVolume('ready') fails.
    const orig = h.store.updateVolume.bind(h.store);
    let once = true;
    h.store.updateVolume = (id, patch) => {
      if (once && patch.status === 'ready') {
        once = false;
        throw resourceExhausted('the state database /x/state.db cannot be written');
      }
      orig(id, patch);
    };
    expect((await errorOf(h.svc.create({ name: 'c' }, ctx))).kind).toBe('ResourceExhausted');
    expect(h.svc.find('c')).toBeNull();
    expect(h.backend.state.volumes.size).toBe(0);
  });
});
