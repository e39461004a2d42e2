// Concurrency through the admin API of a real daemon: many clients at once on one name or
// one volume must give exactly one volume, one mount and one loop device, with every
// reference counted, and the last unmount must leave nothing behind.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startTestDaemon } from '../helpers/daemon.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const mountCount = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === p).length;

describe('admin API under concurrency', () => {
  it('50 concurrent creates of one name make exactly one volume; a conflicting one is refused', async () => {
    const d = await startTestDaemon(roots.create('conc-create'));
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => d.client.createVolume({ name: 'one', backend: 'loop', size: '64MiB' })),
    );
    const ids = new Set(results.map((r) => (r.status === 'fulfilled' ? r.value.id : `rejected: ${String(r.reason)}`)));
    expect([...ids]).toHaveLength(1);
    expect([...ids][0]).toMatch(/^vol-/);
    const mixed = await Promise.allSettled([
      d.client.createVolume({ name: 'two', size: '1GiB', backend: 'loop' }),
      d.client.createVolume({ name: 'two', size: '2GiB', backend: 'loop' }),
    ]);
    expect(mixed.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = mixed.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toMatchObject({ kind: 'AlreadyExists' });
    expect((await d.client.listVolumes()).map((v) => v.name).sort()).toEqual(['one', 'two']);
  });

  it('20 consumers mounting one loop volume at once share one mount; concurrent unmounts release it', async () => {
    const root = roots.create('conc-mount');
    const d = await startTestDaemon(root);
    const v = await d.client.createVolume({ name: 'shared', backend: 'loop', size: '64MiB' });
    const consumers = Array.from({ length: 20 }, (_, i) => `docker:${i}`);
    const mounts = await Promise.all(consumers.map((consumer) => d.client.mount(v.id, { consumer })));
    expect(new Set(mounts.map((m) => m.path)).size).toBe(1);
    expect(mounts.filter((m) => !m.existing)).toHaveLength(20); // each consumer was new
    const managed = `${d.stateRoot}/mounts/${v.id}`;
    expect(mountCount(managed)).toBe(1);
    expect(leftovers(root.dir).loops).toHaveLength(1);
    expect((await d.client.inspectVolume(v.id)).mounts).toHaveLength(20);

    await Promise.all(consumers.map((consumer) => d.client.unmount(v.id, { consumer })));
    const after = await d.client.inspectVolume(v.id);
    expect(after.mounts).toEqual([]);
    expect(after.attachments).toEqual([]);
    expect(mountCount(managed)).toBe(0);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
    await d.client.removeVolume(v.id);
  });
});
