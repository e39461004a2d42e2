// Cluster mode, part 1 (issue 10) on real parts: one etcd started by the test on free
// loopback ports, three berth daemons with their own state roots, sockets and node ids,
// sharing the catalog and one shared storage directory.
//
// - names are cluster-wide (one volume for the same parameters, AlreadyExists naming the
//   field that differs, one volume out of 50 racing creates over 3 nodes);
// - every node lists and inspects every volume, with the node(s) holding it;
// - remove is refused while any node has the volume mounted;
// - a local volume is used only on its node (the error names it); a shared one anywhere;
// - kill -9 of a node mid-create, then a restart, leaves a consistent catalog;
// - with etcd stopped, operations fail fast with Unavailable naming the endpoint and change
//   nothing; when etcd is back every node works again without a restart.
import { existsSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startCluster, type TestCluster, type TestNode } from '../helpers/cluster.js';
import { createHoldServer, reached } from '../helpers/holds.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

async function cluster(label: string, opts: Partial<Parameters<typeof startCluster>[1]> = {}): Promise<TestCluster> {
  return startCluster(roots.create(label), { nodes: ['a', 'b', 'c'], ...opts });
}

/** Sends one admin request without waiting for its answer (the daemon may die under it). */
function sendOnly(n: TestNode, method: string, path: string, body?: object): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = request({ socketPath: n.socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

describe('cluster mode: one catalog in etcd', () => {
  it('names are cluster-wide: the same parameters give one volume, a differing field is named, 50 racing creates on 3 nodes make one', async () => {
    const c = await cluster('cluster-names');
    const [a, b, cc] = c.nodes as [TestNode, TestNode, TestNode];
    const pg = await a.client.createVolume({ name: 'pg', backend: 'shared', size: '64MiB' });
    const again = await b.client.createVolume({ name: 'pg', backend: 'shared', size: '64MiB' });
    expect(again.id).toBe(pg.id);
    await expect(cc.client.createVolume({ name: 'pg', backend: 'shared', size: '128MiB' }))
      .rejects.toMatchObject({ kind: 'AlreadyExists', message: expect.stringMatching(/size/) });

    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) =>
      c.nodes[i % 3]!.client.createVolume({ name: 'race', backend: 'shared', labels: { app: 'x' } })));
    const ids = new Set(results.map((r) => (r.status === 'fulfilled' ? r.value.id : `rejected: ${String(r.reason)}`)));
    expect([...ids]).toHaveLength(1);
    expect([...ids][0]).toMatch(/^vol-/);
    for (const n of c.nodes) {
      expect((await n.client.listVolumes()).filter((v) => v.name === 'race')).toHaveLength(1);
    }
    expect(readdirSync(join(c.shared, 'dir')).filter((e) => e.startsWith('vol-'))).toHaveLength(2); // pg and race, nothing else
  });

  it('lists and inspects every volume on every node, with the nodes holding it; remove is refused while any node has it mounted', async () => {
    const c = await cluster('cluster-holders');
    const [a, b, cc] = c.nodes as [TestNode, TestNode, TestNode];
    const v = await a.client.createVolume({ name: 'web', backend: 'shared' });
    const m = await b.client.mount('web', { consumer: 'ctr-1' });
    expect(m.path.startsWith(b.stateRoot) || m.path.startsWith(b.sharedRoot)).toBe(true);
    for (const n of c.nodes) {
      const seen = await n.client.inspectVolume('web');
      expect(seen.id).toBe(v.id);
      expect(seen.attachments.map((x) => x.node)).toEqual(['b']);
      expect(seen.attachments[0]!.path).toBe(m.path);
      // Mount references are the holding node's own facts; its path only there.
      expect(seen.path).toBe(n === b ? m.path : null);
    }
    const ls = await cc.berth(['volume', 'ls', '--output', 'json']);
    expect(ls.code).toBe(0);
    expect((JSON.parse(ls.stdout) as Array<{ name: string }>).map((x) => x.name)).toContain('web');

    await expect(a.client.removeVolume('web')).rejects.toMatchObject({ kind: 'InUse', message: expect.stringMatching(/"b"/) });
    await expect(a.client.removeVolume('web', { force: true })).rejects.toMatchObject({ kind: 'InUse', message: expect.stringMatching(/"b"/) });
    await b.client.unmount('web', { consumer: 'ctr-1' });
    expect((await cc.client.inspectVolume('web')).attachments).toEqual([]);
    await cc.client.removeVolume('web');
    for (const n of c.nodes) await expect(n.client.inspectVolume('web')).rejects.toMatchObject({ kind: 'NotFound' });
    expect(existsSync(join(c.shared, 'dir', v.id))).toBe(false);
  });

  it('a local volume lives on its node (other nodes get its name in the error); a shared one is provisioned anywhere and used anywhere', async () => {
    const c = await cluster('cluster-local');
    const [a, b, cc] = c.nodes as [TestNode, TestNode, TestNode];
    const local = await a.client.createVolume({ name: 'only-a', backend: 'local' });
    expect(local.node).toBe('a');
    expect((await b.client.inspectVolume('only-a')).node).toBe('a');
    await expect(b.client.mount('only-a', { consumer: 'x' })).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/node "a"/) });
    await expect(b.client.removeVolume('only-a')).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/node "a"/) });
    await a.client.mount('only-a', { consumer: 'x' });
    await a.client.unmount('only-a', { consumer: 'x' });
    await a.client.removeVolume('only-a');

    // Shared loop: created on c, mounted on b (its own loop device and mount), expanded there, removed from a.
    const sl = await cc.client.createVolume({ name: 'sl', backend: 'sloop', size: '64MiB', fs: 'ext4' });
    expect(sl.node).toBeNull();
    const m = await b.client.mount('sl', { consumer: 'ctr' });
    expect((await a.client.inspectVolume('sl')).attachments).toMatchObject([{ node: 'b', path: m.path }]);
    expect((await a.client.inspectVolume('sl')).attachments[0]!.device).toMatch(/^\/dev\/loop\d+$/);
    await b.client.unmount('sl', { consumer: 'ctr' });
    await a.client.removeVolume('sl');
    expect(readdirSync(join(c.shared, 'loop')).filter((e) => e.endsWith('.img'))).toEqual([]);
  });

  it('berth node ls shows every node with its address, version, lease, volumes attached and backends', async () => {
    const c = await cluster('cluster-nodes');
    const [a, b, cc] = c.nodes as [TestNode, TestNode, TestNode];
    await a.client.createVolume({ name: 'held', backend: 'shared' });
    await b.client.mount('held', { consumer: 'x' });
    const nodes = await cc.client.nodes();
    expect(nodes.map((n) => n.id)).toEqual(['a', 'b', 'c']);
    for (const n of nodes) {
      expect(n).toMatchObject({ alive: true, version: expect.any(String) });
      expect(n.backends.map((x) => `${x.name}:${x.shared}`)).toEqual(['local:false', 'shared:true', 'sloop:true']);
    }
    expect(nodes.find((n) => n.id === 'b')!.attachedVolumes).toBe(1);
    // One leader for cluster-wide work, the same seen from every node.
    const leaders = nodes.filter((n) => n.leader).map((n) => n.id);
    expect(leaders).toHaveLength(1);
    expect((await a.client.nodes()).filter((n) => n.leader).map((n) => n.id)).toEqual(leaders);
    const table = await a.berth(['node', 'ls']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/NODE\s+LEADER\s+ADDRESS\s+VERSION\s+LEASE\s+LAST SEEN\s+VOLUMES\s+BACKENDS/);
    expect(table.stdout).toMatch(new RegExp(`^\\s*${leaders[0]}\\s+yes\\s`, 'm'));
    expect(table.stdout.split('\n').filter((l) => /^\s*[abc]\s/.test(l))).toHaveLength(3);
    await b.client.unmount('held', { consumer: 'x' });
    // A node that stops leaves the cluster: its record stays, its lease goes.
    await cc.stop();
    const after = await a.client.nodes();
    expect(after.find((n) => n.id === 'c')).toMatchObject({ alive: false });
    const status = await a.berth(['status']);
    expect(status.stdout).toMatch(/Cluster\s+etcd http:\/\/127\.0\.0\.1:\d+ prefix \/berth\/; 3 node\(s\); lease \w+/);
    // c resigned on its way down: a or b leads (at once, no lease to wait out).
    expect(status.stdout).toMatch(/Leader\s+(a \(this node\)|b)\s*\n/);
  });

  it('kill -9 of a node mid-create, then a restart: the catalog is consistent and the name is free', async () => {
    const root = roots.create('cluster-crash');
    const holds = await createHoldServer(root);
    const c = await startCluster(root, { nodes: ['a', 'b'], daemon: (id) => (id === 'a' ? { env: holds.env } : {}) });
    const [a, b] = c.nodes as [TestNode, TestNode];
    for (const backend of ['shared', 'sloop']) {
      const name = `half-${backend}`;
      const at = holds.holdAt({ step: 'create', when: 'after', name });
      const op = sendOnly(a, 'POST', '/v1/volumes', { name, backend, size: '64MiB' });
      await reached(at, op, holds);
      // The intent is in the catalog, the data on shared storage: a crash right here.
      expect((await b.client.inspectVolume(name)).status).toBe('creating');
      await a.kill('SIGKILL');
      await a.start();
      for (const n of [a, b]) await expect(n.client.inspectVolume(name)).rejects.toMatchObject({ kind: 'NotFound' });
      // No image or directory is left on shared storage without a record.
      const ids = new Set((await b.client.listVolumes()).map((v) => v.id));
      for (const e of [...readdirSync(join(c.shared, 'dir')), ...readdirSync(join(c.shared, 'loop'))]) {
        if (e.startsWith('vol-')) expect(ids.has(e.replace(/\.img$/, '')), e).toBe(true);
      }
      const made = await b.client.createVolume({ name, backend, size: '64MiB' });
      expect(made.status).toBe('ready');
      await a.client.removeVolume(name);
    }
  });

  it('with etcd stopped operations fail fast with Unavailable naming the endpoint and change nothing; when it is back every node heals without a restart', async () => {
    const c = await cluster('cluster-outage', { nodes: ['a', 'b'] });
    const [a, b] = c.nodes as [TestNode, TestNode];
    await a.client.createVolume({ name: 'kept', backend: 'shared' });
    const pids = c.nodes.map((n) => n.pid());
    await c.etcd.stop();
    const started = Date.now();
    for (const op of [
      () => a.client.createVolume({ name: 'during', backend: 'shared' }),
      () => b.client.mount('kept', { consumer: 'x' }),
      () => a.client.removeVolume('kept'),
      () => b.client.listVolumes(),
    ]) {
      const err = await op().then(() => null, (e: unknown) => e);
      expect(err).toMatchObject({ kind: 'Unavailable', message: expect.stringContaining(c.etcd.endpoint) });
    }
    expect(Date.now() - started).toBeLessThan(30_000);
    // Nothing half done on the node: no mount, no directory for the refused create.
    expect(readdirSync(join(c.shared, 'dir')).filter((e) => e.startsWith('vol-'))).toHaveLength(1);
    expect(b.run(['findmnt', '-rn', '-o', 'TARGET']).includes(b.stateRoot)).toBe(false);

    await c.etcd.start();
    for (const n of [a, b]) {
      let ok = false;
      for (let i = 0; i < 150 && !ok; i++) {
        ok = await n.client.listVolumes().then(() => true, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 200));
      }
      expect(ok, `node ${n.id} works again`).toBe(true);
    }
    expect(c.nodes.map((n) => n.pid())).toEqual(pids); // no restart
    await b.client.mount('kept', { consumer: 'x' });
    expect((await a.client.inspectVolume('kept')).attachments.map((x) => x.node)).toEqual(['b']);
    await b.client.unmount('kept', { consumer: 'x' });
    await a.client.removeVolume('kept');
    expect((await b.client.listVolumes()).map((v) => v.name)).toEqual([]);
  });
});
