// The leader's cluster-wide work on three in-process nodes sharing one real etcd
// (test/helpers/fake-cluster.ts: real SQLite per node, real leases, fake backends; "shared"
// is one storage every node reaches, "local" each node's own). Waits are polls with deadlines.
import { describe, expect, it } from 'vitest';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { volumeRecord } from '../test/conformance/catalog.case.js';
import { startFakeCluster, type FakeCluster, type FakeClusterNode } from '../test/helpers/fake-cluster.js';
import { useTmpRoots, type TmpRoot } from '../test/helpers/tmp-root.js';
import type { VolumeRecord } from './catalog/catalog.js';
import { connectEtcd } from './catalog/etcd-client.js';
import { EtcdCatalog } from './catalog/etcd.js';
import { EtcdSession } from './catalog/etcd-session.js';
import { defaultConfig } from './config.js';
import { createSilentLogger } from './log.js';

const roots = useTmpRoots();
const ctx = { frontend: 'admin' } as const;

async function until(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function threeNodes(root: TmpRoot, prefix: string): Promise<FakeCluster> {
  return startFakeCluster(root, {
    nodes: [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`],
    backends: { shared: { shared: true, capabilities: LOOP_LIKE }, local: { capabilities: LOOP_LIKE } },
  });
}

/** Waits until every node names the same leader (in status and node ls); returns it. */
async function leaderOf(c: FakeCluster): Promise<FakeClusterNode> {
  let id: string | null = null;
  await until('every node to name one leader', () => {
    const named = c.nodes.map((n) => {
      const s = n.svc.status().cluster;
      return s.mode === 'etcd' ? s.leader : null;
    });
    const flagged = c.nodes.map((n) => n.svc.nodes().filter((x) => x.leader).map((x) => x.id).join(','));
    id = named[0] ?? null;
    return id !== null && named.every((x) => x === id) && flagged.every((x) => x === id);
  }, 15_000);
  return c.node(id!);
}

/** A fourth "node" straight on etcd: it can take a lock and write, then die (its lease revoked). */
async function ghost(root: TmpRoot, c: FakeCluster) {
  const conn = connectEtcd({ endpoints: [c.etcd.endpoint], prefix: defaultConfig().cluster.etcd.prefix, tls: null, timeoutMs: 5_000 });
  const log = createSilentLogger();
  const session = new EtcdSession(conn, { ttlMs: 30_000, log });
  const catalog = new EtcdCatalog({ conn, session, log });
  await catalog.start();
  root.defer(async () => {
    await catalog.close();
    await session.close();
    conn.close();
  });
  return {
    catalog,
    /** kill -9 and the lease expires: its locks go. */
    die: () => conn.client.leaseClient.leaseRevoke({ ID: session.current! }),
  };
}

describe('cluster leader', () => {
  it('one node leads and every node says which; a non-leader does no cluster-wide work; leadership moves when the leader stops', async () => {
    const c = await threeNodes(roots.create('leader-one'), 'l1');
    const leader = await leaderOf(c);
    expect(await leader.svc.sweep()).toMatchObject({ expired: [], finished: [], errors: [] });
    for (const n of c.nodes) if (n !== leader) expect(await n.svc.sweep()).toBeNull();
    await leader.stop();
    const rest = { ...c, nodes: c.nodes.filter((n) => n !== leader) };
    const next = await leaderOf(rest);
    expect(next.id).not.toBe(leader.id);
    expect(await next.svc.sweep()).not.toBeNull();
  });

  it('expires the holds of a node declared down, so its single-node volumes show free on every node', async () => {
    const c = await threeNodes(roots.create('leader-fence'), 'l2');
    const leader = await leaderOf(c);
    const [victim, third] = c.nodes.filter((n) => n !== leader) as [FakeClusterNode, FakeClusterNode];
    await victim.svc.create({ name: 'held', backend: 'shared' }, ctx);
    await victim.svc.create({ name: 'shared-rwx', backend: 'shared', accessMode: 'ReadWriteMany' }, ctx);
    await victim.svc.mount({ ref: 'held', consumer: 'test:held' }, ctx);
    await victim.svc.mount({ ref: 'shared-rwx', consumer: 'test:rwx' }, ctx);
    await victim.stop(); // dead, no fence agent: it may still write until someone declares it down

    // Not fenced yet: the hold stays (lease expiry alone never frees a volume).
    expect(await leader.svc.sweep()).toMatchObject({ expired: [] });
    expect((await third.svc.inspect('held', ctx)).attachments.map((a) => a.node)).toEqual([victim.id]);

    const fence = await third.svc.fenceNode(victim.id, ctx);
    expect(fence).toMatchObject({ state: 'done', doneBy: 'declared' });
    // The fence change wakes the leader: no call needed.
    await until('the hold to expire', async () => (await third.svc.inspect('held', ctx)).attachments.length === 0, 15_000);
    expect((await leader.svc.inspect('held', ctx)).attachments).toEqual([]);
    // A multi-node volume is not stopped by a fence: its attachment stays.
    expect((await third.svc.inspect('shared-rwx', ctx)).attachments.map((a) => a.node)).toEqual([victim.id]);
    // And the volume is third's to take.
    await third.svc.mount({ ref: 'held', consumer: 'test:third' }, ctx);
    expect((await leader.svc.inspect('held', ctx)).attachments.map((a) => a.node)).toEqual([third.id]);
  });

  it('finishes a shared create a dead node left half done, never one a live operation holds, and leaves a node-local intent to its node', async () => {
    const root = roots.create('leader-intent');
    const c = await threeNodes(root, 'l3');
    const leader = await leaderOf(c);
    const g = await ghost(root, c);
    const shared = leader.backends.get('shared')!;
    const half = volumeRecord('half', { backend: 'shared', status: 'creating' });
    const gone = volumeRecord('gone', { backend: 'shared', status: 'deleting' });
    const away = volumeRecord('away', { backend: 'local', status: 'creating', node: 'elsewhere' });
    const lock = await g.catalog.lock('vol:half', { waitMs: 5_000 });
    await g.catalog.commit((w) => w.createVolume(half), { lock });
    await g.catalog.commit((w) => (w.createVolume(gone), w.createVolume(away)));
    const bv = (r: VolumeRecord) => ({ id: r.id, name: r.name, sizeBytes: r.sizeBytes, fsType: r.fsType, volumeMode: r.volumeMode, options: {} });
    await shared.create(bv(half));
    await shared.create(bv(gone));

    // The ghost still holds the lock of "half": its create may still be running.
    const first = (await leader.svc.sweep())!;
    expect(first.skipped).toContain('half');
    expect(first.finished).toEqual(['gone']);
    expect(shared.state.volumes.has(gone.id)).toBe(false);
    expect(shared.state.volumes.has(half.id)).toBe(true);

    await g.die();
    const second = (await leader.svc.sweep())!;
    expect(second.finished).toEqual(['half']);
    expect(shared.state.volumes.has(half.id)).toBe(false);
    for (const n of c.nodes) {
      await expect(n.svc.inspect('half', ctx)).rejects.toMatchObject({ kind: 'NotFound' });
      await expect(n.svc.inspect('gone', ctx)).rejects.toMatchObject({ kind: 'NotFound' });
    }
    // Only node "elsewhere" reaches its local storage: its intent waits for it.
    expect((await leader.svc.inspect('away', ctx)).status).toBe('creating');
  });
});
