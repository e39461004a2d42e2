// The catalog conformance suite against a real etcd (Debian's etcd-server) that this file
// starts on free loopback ports: three catalogs (three "nodes", each with its own connection
// and lease) share one key prefix per test.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSilentLogger } from '../log.js';
import { connectEtcd, type EtcdConnection } from './etcd-client.js';
import { EtcdCatalog } from './etcd.js';
import { EtcdSession } from './etcd-session.js';
import { runCatalogConformance, volumeRecord } from '../../test/conformance/catalog.case.js';
import { startEtcd, type TestEtcd } from '../../test/helpers/etcd.js';
import { createTmpRoot, type TmpRoot } from '../../test/helpers/tmp-root.js';

let root: TmpRoot;
let etcd: TestEtcd;
beforeAll(async () => {
  root = createTmpRoot('catalog-etcd');
  etcd = await startEtcd(root);
});
afterAll(async () => {
  await root.cleanup();
});

interface Node {
  readonly conn: EtcdConnection;
  readonly session: EtcdSession;
  readonly catalog: EtcdCatalog;
}

async function openNode(prefix: string, ttlMs = 5_000): Promise<Node> {
  const conn = connectEtcd({ endpoints: [etcd.endpoint], prefix, tls: null, timeoutMs: 2_000 });
  const log = createSilentLogger();
  const session = new EtcdSession(conn, { ttlMs, log });
  const catalog = new EtcdCatalog({ conn, session, log });
  await catalog.start();
  return { conn, session, catalog };
}

async function closeNode(n: Node): Promise<void> {
  await n.catalog.close();
  await n.session.close();
  n.conn.close();
}

runCatalogConformance('etcd', {
  async open() {
    const prefix = `/berth-test-${randomBytes(4).toString('hex')}/`;
    const nodes = [await openNode(prefix), await openNode(prefix), await openNode(prefix)];
    return {
      nodes: nodes.map((n) => n.catalog),
      async reopen() {
        await closeNode(nodes[0]!);
        nodes[0] = await openNode(prefix);
        return nodes[0].catalog;
      },
      async loseLock() {
        const id = nodes[0]!.session.current!;
        await nodes[0]!.conn.client.leaseClient.leaseRevoke({ ID: id });
      },
      async cleanup() {
        for (const n of nodes) await closeNode(n);
        const c = connectEtcd({ endpoints: [etcd.endpoint], prefix, tls: null, timeoutMs: 2_000 });
        await c.client.delete().prefix(prefix).exec();
        c.close();
      },
    };
  },
});

describe('etcd catalog faults', () => {
  it('fails fast with Unavailable naming the endpoint while etcd is down, and heals by itself when it returns', async () => {
    const prefix = `/berth-test-${randomBytes(4).toString('hex')}/`;
    const a = await openNode(prefix);
    const b = await openNode(prefix);
    try {
      await a.catalog.commit((w) => w.createVolume(volumeRecord('before')));
      await etcd.stop();
      const started = Date.now();
      const err = await a.catalog.commit((w) => w.createVolume(volumeRecord('during'))).catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'Unavailable' });
      expect((err as Error).message).toContain(etcd.endpoint);
      expect(Date.now() - started).toBeLessThan(10_000);
      await expect(a.catalog.fresh()).rejects.toMatchObject({ kind: 'Unavailable' });
      // Reads keep answering from the view while etcd is away.
      expect(a.catalog.getVolumeByName('before')).not.toBeNull();
      await etcd.start();
      // No restart: the same catalogs work again once etcd answers (the client reconnects).
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        ok = await a.catalog.commit((w) => w.createVolume(volumeRecord('after'))).then(() => true, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ok).toBe(true);
      await b.catalog.fresh();
      expect(b.catalog.getVolumeByName('after')).not.toBeNull();
      expect(b.catalog.getVolumeByName('during')).toBeNull();
    } finally {
      if (!etcd) throw new Error('no etcd');
      await etcd.start();
      await closeNode(a);
      await closeNode(b);
    }
  });
});
