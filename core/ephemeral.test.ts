// Ephemeral volumes on the fake backends and a real SQLite file: made by their first mount,
// removed by their last unmount, and removed by reconcile whenever a crash leaves one with no
// reference (the states a kill -9 leaves are written into the store directly, as in
// reconcile.test.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, useCatalogs } from '../test/fake/catalogs.js';
import { EPHEMERAL_LABEL } from './ephemeral.js';
import type { OpContext } from './service.js';

const ctx: OpContext = { frontend: 'csi' };
const catalogs = useCatalogs();
const NAME = `csi-${'ab'.repeat(32)}`;

async function errorOf(p: Promise<unknown>): Promise<{ kind: string; field?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { kind: string; field?: string; message: string };
  }
  throw new Error('expected a failure');
}

describe.each(CATALOGS)('ephemeral volumes (%s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind, { backends: { local: {}, loop: { capabilities: LOOP_LIKE } } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('are made by their mount and removed by their last unmount, on a dir-like and a loop-like backend', async () => {
    for (const backend of ['local', 'loop']) {
      const name = `${NAME.slice(0, 60)}-${backend}`;
      const req = { ref: name, consumer: 'csi:/pods/p/v', ephemeral: { backend, sizeBytes: 2 ** 20, labels: { pod: 'p' } } };
      const first = await h.svc.mount(req, ctx);
      expect(first.existing).toBe(false);
      expect(first.volume).toMatchObject({ name, backend, labels: { pod: 'p', [EPHEMERAL_LABEL]: 'true' }, mounts: [{ consumer: 'csi:/pods/p/v' }] });
      // kubelet repeats a NodePublish whose answer it lost: the same volume, the same reference.
      const again = await h.svc.mount(req, ctx);
      expect(again).toMatchObject({ existing: true, volume: { id: first.volume.id } });
      const state = h.backends.get(backend)!.state;
      expect(state.volumes.get(first.volume.id)?.mounted).toBe(true);

      const last = await h.svc.unmount({ ref: name, consumer: 'csi:/pods/p/v' }, ctx);
      expect(last).toMatchObject({ id: first.volume.id, mounts: [] });
      expect(h.svc.find(name)).toBeNull();
      expect(state.volumes.has(first.volume.id)).toBe(false);
      // A repeated unmount finds nothing to do.
      expect((await errorOf(h.svc.unmount({ ref: name, consumer: 'csi:/pods/p/v' }, ctx))).kind).toBe('NotFound');
    }
  });

  it('keep a volume with another reference until that one goes too', async () => {
    await h.svc.mount({ ref: NAME, consumer: 'a', ephemeral: { accessMode: 'ReadWriteOnce' } }, ctx);
    await h.svc.mount({ ref: NAME, consumer: 'b' }, ctx);
    await h.svc.unmount({ ref: NAME, consumer: 'a' }, ctx);
    expect(h.svc.find(NAME)).not.toBeNull();
    await h.svc.unmount({ ref: NAME, consumer: 'b' }, ctx);
    expect(h.svc.find(NAME)).toBeNull();
  });

  it('refuse a name an ordinary volume has, another spec for the same name, and the marker in a create', async () => {
    await h.svc.create({ name: 'plain' }, ctx);
    const taken = await errorOf(h.svc.mount({ ref: 'plain', consumer: 'c', ephemeral: {} }, ctx));
    expect(taken).toMatchObject({ kind: 'FailedPrecondition', message: expect.stringContaining('not an ephemeral volume') });
    expect(h.svc.find('plain')!.mounts).toEqual([]);

    await h.svc.mount({ ref: NAME, consumer: 'c', ephemeral: { sizeBytes: 2 ** 20 } }, ctx);
    const other = await errorOf(h.svc.mount({ ref: NAME, consumer: 'c', ephemeral: { sizeBytes: 2 ** 21 } }, ctx));
    expect(other).toMatchObject({ kind: 'AlreadyExists', message: expect.stringContaining('size') });

    const marked = await errorOf(h.svc.create({ name: 'sneaky', labels: { [EPHEMERAL_LABEL]: 'true' } }, ctx));
    expect(marked).toMatchObject({ kind: 'InvalidArgument', field: `labels.${EPHEMERAL_LABEL}` });
    const bad = await errorOf(h.svc.mount({ ref: 'e2', consumer: 'c', ephemeral: { sizeBytes: -1 } }, ctx));
    expect(bad).toMatchObject({ kind: 'InvalidArgument', field: 'size' });
    expect(h.svc.find('e2')).toBeNull();
  });

  it('remove the volume they made when its mount fails', async () => {
    const refused = await errorOf(h.svc.mount({ ref: NAME, consumer: 'c', target: 'relative/x', ephemeral: {} }, ctx));
    expect(refused).toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    expect(h.svc.find(NAME)).toBeNull();
    expect(h.backend.state.volumes.size).toBe(0);
  });

  it('after a crash: reconcile removes one with no reference (between create and mount, between unmount and remove) and keeps one with its reference', async () => {
    // Made and referenced, then the reference taken away behind the service's back: the state
    // a crash between "ready" and the mount's pending row, or between the unmount's commit and
    // the removal, leaves.
    const lost = await h.svc.mount({ ref: `${NAME.slice(0, 60)}-lost`, consumer: 'c', ephemeral: {} }, ctx);
    h.store.deleteMountRef(lost.volume.id, 'c');
    // Crashed inside the mount: a pending reference only.
    const pending = await h.svc.mount({ ref: `${NAME.slice(0, 60)}-pending`, consumer: 'c', ephemeral: { backend: 'loop' } }, ctx);
    h.store.setMountRefState(pending.volume.id, 'c', 'pending');
    // Still referenced: its mount is re-established after the "reboot" below.
    const kept = await h.svc.mount({ ref: `${NAME.slice(0, 60)}-kept`, consumer: 'c', ephemeral: { backend: 'loop' } }, ctx);
    const loop = h.backends.get('loop')!.state;
    loop.volumes.get(kept.volume.id)!.mounted = false;
    loop.volumes.get(kept.volume.id)!.device = null;

    await h.restart();
    expect(h.svc.find(lost.volume.id)).toBeNull();
    expect(h.svc.find(pending.volume.id)).toBeNull();
    expect(h.backend.state.volumes.has(lost.volume.id)).toBe(false);
    expect(loop.volumes.has(pending.volume.id)).toBe(false);
    expect(h.svc.find(kept.volume.id)).toMatchObject({ mounts: [{ consumer: 'c' }] });
    expect(loop.volumes.get(kept.volume.id)).toMatchObject({ mounted: true });
    const again = await h.svc.reconcile();
    expect(again).toMatchObject({ ephemeralRemoved: [], errors: [] });
  });
});
