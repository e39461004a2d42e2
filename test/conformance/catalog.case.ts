/**
 * One conformance suite for every Catalog implementation (core/catalog/catalog.ts): the same
 * records, the same idempotency and atomicity, the same lock and concurrency results and the
 * same recovery after a restart. core/catalog/sqlite.test.ts and etcd.test.ts run it.
 *
 *   runCatalogConformance('etcd', { open: async () => ({ nodes: [a, b, c], reopen, loseLock, cleanup }) });
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AttachmentRecord, Catalog, CatalogLock, SnapshotRecord, VolumeRecord } from '../../core/catalog/catalog.js';

export interface CatalogFixture {
  /** Catalogs over one backing store, as different nodes see it (embedded: one node, one handle). */
  readonly nodes: readonly Catalog[];
  /** Closes node 0 and opens it again on the same data (a restart after kill -9 of that node). */
  reopen(): Promise<Catalog>;
  /** Makes node 0 lose `lock` the way a node does (its lease expires); null when locks cannot be lost. */
  readonly loseLock: ((lock: CatalogLock) => Promise<void>) | null;
  cleanup(): Promise<void>;
}

export interface CatalogConformanceOptions {
  open(): Promise<CatalogFixture>;
}

let seq = 0;
const id = (p: 'vol' | 'snap') => `${p}-${String(Date.now()).padStart(10, '0').slice(-10)}${String(seq++).padStart(16, '0')}`;

export const volumeRecord = (name: string, over: Partial<VolumeRecord> = {}): VolumeRecord => ({
  id: id('vol'), name, backend: 'local', sizeBytes: 0, fsType: null, volumeMode: 'filesystem', accessMode: 'ReadWriteOnce',
  labels: {}, options: {}, sourceKind: null, sourceId: null, status: 'ready', createdAt: new Date().toISOString(), node: null, ...over,
});

const attachment = (volumeId: string, node: string, over: Partial<AttachmentRecord> = {}): AttachmentRecord => ({
  volumeId, node, device: null, path: null, readOnly: false, implicit: true, createdAt: new Date().toISOString(), ...over,
});

const snapshotRecord = (name: string, volumeId: string): SnapshotRecord => ({
  id: id('snap'), name, volumeId, backend: 'local', sizeBytes: 0, fsType: null, volumeMode: 'filesystem', status: 'creating',
  createdAt: new Date().toISOString(),
});

export function runCatalogConformance(label: string, o: CatalogConformanceOptions): void {
  describe(`catalog conformance: ${label}`, () => {
    let fx: CatalogFixture | null = null;
    const open = async () => (fx = await o.open());
    afterEach(async () => {
      await fx?.cleanup();
      fx = null;
    });

    it('creates, finds by id and name, lists in name order with filters, patches and deletes', async () => {
      const [c] = (await open()).nodes as [Catalog];
      const b = volumeRecord('b', { labels: { team: 'x' } });
      const a = volumeRecord('a', { backend: 'loop', status: 'creating' });
      await c.commit((w) => {
        w.createVolume(b);
        w.createVolume(a);
      });
      expect(c.getVolume(a.id)).toEqual(a);
      expect(c.getVolumeByName('b')).toEqual(b);
      expect(c.getVolumeByName('nope')).toBeNull();
      expect(c.listVolumes().map((v) => v.name)).toEqual(['a', 'b']);
      expect(c.listVolumes({ backend: 'loop' }).map((v) => v.name)).toEqual(['a']);
      expect(c.listVolumes({ labels: { team: 'x' } }).map((v) => v.name)).toEqual(['b']);
      expect(c.listVolumes({ labels: { team: 'y' } })).toEqual([]);
      expect(c.listVolumes({ status: 'creating' }).map((v) => v.name)).toEqual(['a']);
      expect(c.countVolumes()).toBe(2);
      await c.commit((w) => w.patchVolume(a.id, { status: 'ready', sizeBytes: 42 }));
      expect(c.getVolume(a.id)).toMatchObject({ status: 'ready', sizeBytes: 42, name: 'a' });
      await c.commit((w) => w.deleteVolume(a.id));
      expect(c.getVolume(a.id)).toBeNull();
      expect(c.getVolumeByName('a')).toBeNull();
      expect(c.countVolumes()).toBe(1);
    });

    it('keeps attachments per node, replaces them by (volume, node), and deletes them with the volume', async () => {
      const [c] = (await open()).nodes as [Catalog];
      const v = volumeRecord('att');
      await c.commit((w) => w.createVolume(v));
      await c.commit((w) => {
        w.putAttachment(attachment(v.id, 'n2'));
        w.putAttachment(attachment(v.id, 'n1', { device: '/dev/loop9' }));
      });
      expect(c.listAttachments(v.id).map((a) => a.node)).toEqual(['n1', 'n2']);
      await c.commit((w) => w.putAttachment(attachment(v.id, 'n1', { device: '/dev/loop9', path: '/m/data', implicit: false })));
      expect(c.listAttachments(v.id)).toHaveLength(2);
      expect(c.listAttachments(v.id)[0]).toMatchObject({ node: 'n1', path: '/m/data', implicit: false });
      await c.commit((w) => w.deleteAttachment(v.id, 'n2'));
      expect(c.listAttachments(v.id).map((a) => a.node)).toEqual(['n1']);
      expect(c.listAttachments().map((a) => a.volumeId)).toEqual([v.id]);
      await c.commit((w) => w.deleteVolume(v.id));
      expect(c.listAttachments(v.id)).toEqual([]);
      expect(c.listAttachments()).toEqual([]);
    });

    it('keeps snapshots with cluster-wide names and statuses', async () => {
      const [c] = (await open()).nodes as [Catalog];
      const s = snapshotRecord('s1', 'vol-x');
      await c.commit((w) => w.createSnapshot(s));
      expect(c.getSnapshotByName('s1')).toEqual(s);
      await c.commit((w) => w.setSnapshotStatus(s.id, 'ready'));
      expect(c.getSnapshot(s.id)?.status).toBe('ready');
      expect(c.listSnapshots({ volumeId: 'vol-x' }).map((x) => x.name)).toEqual(['s1']);
      await expect(c.commit((w) => w.createSnapshot(snapshotRecord('s1', 'vol-y')))).rejects.toMatchObject({ kind: 'AlreadyExists' });
      await c.commit((w) => w.deleteSnapshot(s.id));
      expect(c.getSnapshotByName('s1')).toBeNull();
    });

    it('applies a commit whole or not at all: a taken name fails the commit and writes nothing of it', async () => {
      const [c] = (await open()).nodes as [Catalog];
      await c.commit((w) => w.createVolume(volumeRecord('taken')));
      const other = volumeRecord('other');
      await expect(c.commit((w) => {
        w.createVolume(other);
        w.createVolume(volumeRecord('taken'));
      })).rejects.toMatchObject({ kind: 'AlreadyExists' });
      expect(c.getVolumeByName('other')).toBeNull();
      expect(c.countVolumes()).toBe(1);
    });

    it('runs the local writes of a step with its commit, and not when the commit fails', async () => {
      const [c] = (await open()).nodes as [Catalog];
      const ran: string[] = [];
      await c.commit((w) => w.createVolume(volumeRecord('l1')), { local: () => ran.push('l1') });
      await expect(c.commit((w) => w.createVolume(volumeRecord('l1')), { local: () => ran.push('l1-again') })).rejects.toBeDefined();
      expect(ran).toEqual(['l1']);
    });

    it('locks one key at a time across nodes; waitMs 0 is Busy at once; a released lock passes on in order', async () => {
      const f = await open();
      const nodes = f.nodes;
      const first = await nodes[0]!.lock('vol:x', { waitMs: 1_000 });
      const other = nodes[nodes.length - 1]!;
      if (nodes.length > 1) {
        await expect(other.lock('vol:x', { waitMs: 0 })).rejects.toMatchObject({ kind: 'Busy' });
      }
      const order: string[] = [];
      const waiting = other.lock('vol:x', { waitMs: 10_000 }).then((l) => {
        order.push('second');
        return l;
      });
      const unrelated = await nodes[0]!.lock('vol:y', { waitMs: 0 });
      await unrelated.release();
      await new Promise((r) => setTimeout(r, 50));
      expect(order).toEqual([]);
      order.push('first released');
      await first.release();
      const second = await waiting;
      expect(order).toEqual(['first released', 'second']);
      await second.release();
      await second.release(); // twice is harmless
      const again = await nodes[0]!.lock('vol:x', { waitMs: 0 });
      await again.release();
    });

    it('gives exactly one volume for 50 racing creates of one name spread over the nodes', async () => {
      const { nodes } = await open();
      const results = await Promise.allSettled(Array.from({ length: 50 }, async (_, i) => {
        const c = nodes[i % nodes.length]!;
        const lock = await c.lock('vol:race', { waitMs: 30_000 });
        try {
          if (c.getVolumeByName('race')) return 'found';
          await c.commit((w) => w.createVolume(volumeRecord('race')), { lock });
          return 'created';
        } finally {
          await lock.release();
        }
      }));
      const values = results.map((r) => (r.status === 'fulfilled' ? r.value : `rejected: ${String((r.reason as Error).message)}`));
      expect(values.filter((v) => v === 'created')).toHaveLength(1);
      expect(values.filter((v) => v === 'found')).toHaveLength(49);
      for (const c of nodes) {
        await c.fresh();
        expect(c.listVolumes().filter((v) => v.name === 'race')).toHaveLength(1);
      }
    });

    it('shows every node a commit made on another one after fresh()', async () => {
      const { nodes } = await open();
      const v = volumeRecord('seen-everywhere');
      await nodes[0]!.commit((w) => w.createVolume(v));
      for (const c of nodes) {
        await c.fresh();
        expect(c.getVolumeByName('seen-everywhere')?.id).toBe(v.id);
      }
    });

    it('refuses a commit under a lock that was lost, and writes nothing', async () => {
      const f = await open();
      if (!f.loseLock) return; // the embedded lock is in-process: it cannot be lost (see sqlite.test.ts)
      const c = f.nodes[0]!;
      const lock = await c.lock('vol:fenced', { waitMs: 1_000 });
      await f.loseLock(lock);
      await expect(c.commit((w) => w.createVolume(volumeRecord('fenced')), { lock })).rejects.toMatchObject({ kind: 'Unavailable' });
      await c.fresh().catch(() => undefined);
      const other = f.nodes[f.nodes.length - 1]!;
      await other.fresh();
      expect(other.getVolumeByName('fenced')).toBeNull();
    });

    it('finds every record again after a restart', async () => {
      const f = await open();
      const c = f.nodes[0]!;
      const v = volumeRecord('survivor', { status: 'deleting' });
      await c.commit((w) => {
        w.createVolume(v);
        w.putAttachment(attachment(v.id, 'n1'));
        w.createSnapshot(snapshotRecord('snap-survivor', v.id));
      });
      const again = await f.reopen();
      await again.fresh();
      expect(again.getVolumeByName('survivor')).toEqual(v);
      expect(again.listAttachments(v.id).map((a) => a.node)).toEqual(['n1']);
      expect(again.getSnapshotByName('snap-survivor')?.volumeId).toBe(v.id);
      expect(again.listVolumes({ status: 'deleting' }).map((x) => x.name)).toEqual(['survivor']);
    });
  });
}
