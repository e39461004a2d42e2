// Leader election against a real etcd (Debian's etcd-server) started by this file on free
// loopback ports: three "nodes" (each its own connection, session lease, catalog view and
// election) share one key prefix per test. Waits are polls with deadlines, never sleeps.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSilentLogger } from '../log.js';
import { connectEtcd, type EtcdConnection } from './etcd-client.js';
import { EtcdCatalog } from './etcd.js';
import { EtcdSession } from './etcd-session.js';
import { LeaderElection } from './election.js';
import { startEtcd, type TestEtcd } from '../../test/helpers/etcd.js';
import { startTcpProxy } from '../../test/helpers/tcp-proxy.js';
import { createTmpRoot, type TmpRoot } from '../../test/helpers/tmp-root.js';

let root: TmpRoot;
let etcd: TestEtcd;
beforeAll(async () => {
  root = createTmpRoot('election');
  etcd = await startEtcd(root);
});
afterAll(async () => {
  await root.cleanup();
});

interface Node {
  readonly id: string;
  readonly conn: EtcdConnection;
  readonly session: EtcdSession;
  readonly catalog: EtcdCatalog;
  readonly election: LeaderElection;
  close(): Promise<void>;
}

async function openNode(id: string, prefix: string, o: { ttlMs: number; stopAfterMs: number; endpoint?: string }): Promise<Node> {
  const conn = connectEtcd({ endpoints: [o.endpoint ?? etcd.endpoint], prefix, tls: null, timeoutMs: 1_000 });
  const log = createSilentLogger();
  const session = new EtcdSession(conn, { ttlMs: o.ttlMs, log });
  const catalog = new EtcdCatalog({ conn, session, log });
  await catalog.start();
  const election = new LeaderElection({ conn, session, view: catalog.view, nodeId: id, log, stopAfterMs: o.stopAfterMs, checkEveryMs: 50 });
  let closed = false;
  const node: Node = {
    id, conn, session, catalog, election,
    async close() {
      if (closed) return;
      closed = true;
      await election.resign();
      await catalog.close();
      await session.close();
      conn.close();
    },
  };
  root.defer(() => node.close());
  return node;
}

const newPrefix = () => `/berth-election-${randomBytes(4).toString('hex')}/`;

/** Polls `cond` every 20 ms; fails with `what` after `ms`. `each` runs at every poll (invariant checks). */
async function until(what: string, cond: () => boolean, ms: number, each?: () => void): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    each?.();
    if (cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const leaders = (nodes: readonly Node[]) => nodes.filter((n) => n.election.isLeader());
/** The invariant of every test: never two nodes leading at once. */
const atMostOne = (nodes: readonly Node[]) => () => expect(leaders(nodes).map((n) => n.id).length).toBeLessThanOrEqual(1);

/** Nodes a, b and c on a fresh prefix, each with its election started. */
async function startThree(): Promise<Node[]> {
  const prefix = newPrefix();
  const nodes = [];
  for (const id of ['a', 'b', 'c']) nodes.push(await openNode(id, prefix, { ttlMs: 10_000, stopAfterMs: 8_000 }));
  for (const n of nodes) n.election.start();
  return nodes;
}

describe('leader election', () => {
  it('elects exactly one leader among three nodes, and every node names it', async () => {
    const nodes = await startThree();
    await until('one leader that every view names', () => {
      const l = leaders(nodes);
      return l.length === 1 && nodes.every((n) => n.election.leader() === l[0]!.id);
    }, 10_000, atMostOne(nodes));
    const leader = leaders(nodes)[0]!;
    expect(leader.election.token()).not.toBeNull();
    for (const n of nodes) if (n !== leader) expect(n.election.token()).toBeNull();
  });

  it('passes leadership on at once when the leader resigns (the daemon stops), and when its lease is revoked', async () => {
    const nodes = await startThree();
    await until('a leader', () => leaders(nodes).length === 1, 10_000, atMostOne(nodes));
    const first = leaders(nodes)[0]!;
    await first.close();
    const rest = nodes.filter((n) => n !== first);
    // Far less than the 10 s TTL: a resignation deletes the key, no expiry to wait for.
    const resigned = Date.now();
    await until('a second leader', () => leaders(rest).length === 1, 5_000, atMostOne(nodes));
    expect(Date.now() - resigned).toBeLessThan(5_000);
    const second = leaders(rest)[0]!;
    for (const n of rest) await until(`${n.id} to name ${second.id}`, () => n.election.leader() === second.id, 5_000);

    // The lease revoked behind the leader's back (as when it expires at etcd): its key goes,
    // it stops leading, the third node leads, and the deposed one enters again with a new lease.
    const third = rest.find((n) => n !== second)!;
    const deposed = second.election.token()!;
    await second.conn.client.leaseClient.leaseRevoke({ ID: second.session.current! });
    // A revocation is instant at etcd, and each node learns of it through its own watch: for a
    // moment the deposed node's view may still say it leads while the next one's says it does.
    // What keeps the deposed one harmless is its token: from the revocation on, its commits fail.
    // (When a lease expires instead, the leader stops before that: the partition test below.)
    await expect(second.catalog.commit((w) => w.deleteFence('nobody'), { lock: deposed })).rejects.toMatchObject({ kind: 'Unavailable' });
    await until('the third node to lead', () => third.election.isLeader(), 10_000);
    await until('the deposed node to stop leading', () => !second.election.isLeader(), 10_000);
    await until('the deposed node back as a candidate', () => third.catalog.view.leaderQueue().some((q) => q.node === second.id), 10_000, atMostOne(nodes));
    expect(third.election.leader()).toBe(third.id);
  });

  it('a token from a deposed leader makes its commits fail', async () => {
    const prefix = newPrefix();
    const a = await openNode('a', prefix, { ttlMs: 10_000, stopAfterMs: 8_000 });
    const b = await openNode('b', prefix, { ttlMs: 10_000, stopAfterMs: 8_000 });
    a.election.start();
    await until('a to lead', () => a.election.isLeader(), 10_000);
    b.election.start();
    const token = a.election.token()!;
    await a.catalog.commit((w) => w.deleteFence('nobody'), { lock: token });
    await a.conn.client.leaseClient.leaseRevoke({ ID: a.session.current! });
    await until('b to lead', () => b.election.isLeader(), 10_000);
    await expect(a.catalog.commit((w) => w.deleteFence('nobody'), { lock: token })).rejects.toMatchObject({ kind: 'Unavailable' });
  });

  it('a leader cut off from etcd stops leading before its lease can expire; another node leads only after that', async () => {
    const prefix = newPrefix();
    const proxy = await startTcpProxy(root, etcd.port);
    // TTL 3 s (etcd counts whole seconds); the leader steps down after 1.5 s without a renewal.
    const a = await openNode('a', prefix, { ttlMs: 3_000, stopAfterMs: 1_500, endpoint: proxy.endpoint });
    a.election.start();
    await until('a to lead', () => a.election.isLeader(), 10_000);
    const b = await openNode('b', prefix, { ttlMs: 3_000, stopAfterMs: 1_500 });
    const c = await openNode('c', prefix, { ttlMs: 3_000, stopAfterMs: 1_500 });
    b.election.start();
    c.election.start();
    const nodes = [a, b, c];
    await until('b and c as candidates', () => b.catalog.view.leaderQueue().length === 3, 10_000, atMostOne(nodes));
    expect(leaders(nodes).map((n) => n.id)).toEqual(['a']);

    let stoppedAt = 0;
    const offA = () => {
      if (stoppedAt === 0 && !a.election.isLeader()) stoppedAt = Date.now();
    };
    a.election.on('change', offA);
    proxy.cut();
    const cutAt = Date.now();
    await until('another node to lead', () => b.election.isLeader() || c.election.isLeader(), 20_000, () => {
      offA();
      atMostOne(nodes)();
    });
    const tookOverAt = Date.now();
    expect(stoppedAt).toBeGreaterThan(0);
    expect(stoppedAt).toBeLessThanOrEqual(tookOverAt);
    // Not before the lease could have expired at etcd (the last renewal came before the cut).
    expect(tookOverAt - cutAt).toBeGreaterThanOrEqual(3_000 - 1_000);
    expect(a.election.isLeader()).toBe(false);
    expect(a.election.token()).toBeNull();

    // Back: a enters again with a new lease, behind the new leader.
    proxy.heal();
    const now = leaders(nodes)[0]!;
    await until('a back as a candidate', () => now.catalog.view.leaderQueue().some((q) => q.node === 'a'), 20_000, atMostOne(nodes));
    await until('a\'s view to catch up', () => a.election.leader() === now.id, 20_000, atMostOne(nodes));
    expect(a.election.isLeader()).toBe(false);
  });
});
