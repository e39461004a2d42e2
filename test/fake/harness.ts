/**
 * A volume service on a real SQLite file and fake backends, for unit tests of the core
 * and of frontends, over either catalog (docs/architecture.md, "one rule set over two stores"):
 * - embedded (default): the SQLite catalog in the same file as the node facts;
 * - etcd: a real etcd (test/helpers/etcd.ts, one per test file: test/fake/catalogs.ts), joined
 *   the way cli/daemon.ts joins a cluster (core/catalog/cluster.ts joinCluster: session lease,
 *   catalog, membership; composed here so a crash can drop the connection first), under a key
 *   prefix of this harness's own.
 *
 * `restart()` simulates a daemon restart after a crash: a new store on the same file and a
 * new service whose fake backends share the old "kernel" state. With etcd, the old process's
 * connection is dropped without revoking its lease and the lease file stays, as kill -9 leaves
 * them: the new session takes the lease back (its locks with it), the same prefix holds the
 * catalog.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Backend } from '../../core/backend.js';
import type { Catalog, CatalogWriter } from '../../core/catalog/catalog.js';
import { connectEtcd } from '../../core/catalog/etcd-client.js';
import { EtcdCatalog } from '../../core/catalog/etcd.js';
import { EtcdSession } from '../../core/catalog/etcd-session.js';
import { Membership } from '../../core/catalog/membership.js';
import type { ClusterBaseStatus, NodeStatus } from '../../core/catalog/nodes.js';
import { SqliteCatalog } from '../../core/catalog/sqlite.js';
import { openStore } from '../../core/store/sqlite.js';
import { createVolumeService, type CoreVolumeService } from '../../core/volume-service.js';
import type { Store } from '../../core/store/store.js';
import { createExec, type Exec } from '../../core/os/exec.js';
import { createSilentLogger, type Logger } from '../../core/log.js';
import type { OpObserver } from '../../core/observe.js';
import { createFakeBackend, createFakeState, type FakeBackend, type FakeBackendOptions, type FakeState } from './fake.js';

/** Which catalog the service runs over: the embedded one, or etcd at `etcd` (an endpoint URL). */
export type HarnessCatalog = 'embedded' | { readonly etcd: string; readonly leaseTtlMs?: number };

export interface FakeHarnessOptions {
  /** Backend instances by name (default: { local: {} }); the first is the default backend. */
  readonly backends?: Record<string, Omit<FakeBackendOptions, 'name' | 'state' | 'root'>>;
  readonly nodeId?: string;
  readonly lockWaitMs?: number;
  /** Periodic reconcile interval (default 0: only at start-up). */
  readonly reconcileIntervalMs?: number;
  readonly observer?: OpObserver;
  readonly log?: Logger;
  readonly exec?: Exec;
  /** Existing temporary root (default: a new mkdtemp dir, removed by cleanup()). */
  readonly root?: string;
  /**
   * targets.allowedPrefixes (default: [root]). The state root the core is told about is the
   * given root, or <root>/state for a generated one, so that targets elsewhere under it are allowed.
   */
  readonly targetPrefixes?: readonly string[];
  /** Default: embedded. */
  readonly catalog?: HarnessCatalog;
}

export interface FakeHarness {
  readonly root: string;
  readonly dbPath: string;
  /** The catalog mode the service runs in. */
  readonly mode: 'embedded' | 'etcd';
  readonly nodeId: string;
  svc: CoreVolumeService;
  /** This node's SQLite: node facts (mount references), and in embedded mode the catalog's tables too. */
  store: Store;
  /** The catalog the service reads and writes (replaced by restart()). */
  catalog: Catalog;
  backends: Map<string, FakeBackend>;
  /** The default ("local" unless configured) backend. */
  backend: FakeBackend;
  /**
   * Writes catalog records directly, as another node or a crash left them (test setup); the
   * writes are visible to the service when it returns.
   */
  seed(fn: (w: CatalogWriter) => void): Promise<void>;
  /**
   * Opens a fresh store + service on the same file, catalog and kernel state (a restart after
   * kill -9). closeOld (default true) lets the old service finish what it runs first; false
   * drops it where it stands (an operation held mid-way never writes again).
   */
  restart(opts?: { closeOld?: boolean }): Promise<void>;
  cleanup(): Promise<void>;
}

/** What the volume service is given in cluster mode (VolumeServiceDeps.cluster), and how the harness ends it. */
interface TestClusterNode {
  readonly catalog: EtcdCatalog;
  nodes(): NodeStatus[];
  status(): ClusterBaseStatus;
  sinceRenewal(): number;
  readonly selfFenceMs: number;
  /** Leaves the cluster (presence removed, lease revoked). */
  close(): Promise<void>;
  /** Stops as kill -9 would: nothing reaches etcd, the lease and its file stay. */
  crash(): Promise<void>;
}

interface Built {
  readonly backends: Map<string, FakeBackend>;
  readonly store: Store;
  readonly catalog: Catalog;
  readonly cluster: TestClusterNode | null;
  readonly svc: CoreVolumeService;
}

/** @example const h = await createFakeHarness(); await h.svc.create({ name: 'a' }, { frontend: 'admin' }); */
export async function createFakeHarness(opts: FakeHarnessOptions = {}): Promise<FakeHarness> {
  const root = opts.root ?? mkdtempSync(join(tmpdir(), 'berth-core-'));
  const dbPath = join(root, 'state.db');
  const stateRoot = opts.root ?? join(root, 'state');
  const nodeId = opts.nodeId ?? 'node-1';
  const specs = opts.backends ?? { local: {} };
  const names = Object.keys(specs);
  const states = new Map<string, FakeState>(names.map((n) => [n, createFakeState()]));
  const exec = opts.exec ?? createExec();
  const log = opts.log ?? createSilentLogger();
  const etcd = opts.catalog === undefined || opts.catalog === 'embedded' ? null : opts.catalog;
  // A prefix of this harness's own: harnesses of one test file share the file's etcd.
  const prefix = `/berth-unit-${randomBytes(6).toString('hex')}/`;
  // The session keeps its lease file there, as a daemon does in its state root.
  if (etcd) mkdirSync(stateRoot, { recursive: true, mode: 0o700 });

  /**
   * This node's place in the cluster, composed as core/catalog/cluster.ts joinCluster does it
   * (connection, session lease with its file in the state root, catalog, membership), with the
   * connection kept so that a crash can drop it first.
   */
  const joinEtcd = async (endpoint: string, leaseTtlMs: number): Promise<TestClusterNode> => {
    const conn = connectEtcd({ endpoints: [endpoint], prefix, tls: null, timeoutMs: 2_000 });
    const session = new EtcdSession(conn, { ttlMs: leaseTtlMs, log, leaseFile: join(stateRoot, 'cluster.lease') });
    const catalog = new EtcdCatalog({ conn, session, log });
    const startedAt = new Date().toISOString();
    const membership = new Membership({
      conn, session, view: catalog.view, log,
      self: () => ({
        id: nodeId, addresses: [], version: 'test', startedAt,
        backends: names.map((n) => ({ name: n, driver: 'fake', shared: specs[n]?.capabilities?.scope === 'global' })),
      }),
    });
    const close = async () => {
      await membership.stop();
      await catalog.close();
      await session.close();
      conn.close();
    };
    try {
      await catalog.start();
      await membership.start();
    } catch (err) {
      await close();
      throw err;
    }
    return {
      catalog,
      nodes: () => membership.list(),
      status: () => ({
        mode: 'etcd', endpoints: [endpoint], prefix, lease: session.current, leaseTtlMs, nodes: catalog.view.listNodes().length, leader: null,
        sinceRenewalMs: Number.isFinite(session.sinceRenewal()) ? Math.round(session.sinceRenewal()) : null,
      }),
      sinceRenewal: () => session.sinceRenewal(),
      // Past the TTL: a unit test's etcd outage must not fence its node (the daemons' tests do that).
      selfFenceMs: leaseTtlMs * 2,
      close,
      async crash() {
        // kill -9: the connection goes first, so none of the graceful steps reaches etcd (the
        // presence key and the lease stay until the TTL); the lease file stays for the next start.
        const leaseFile = join(stateRoot, 'cluster.lease');
        const lease = existsSync(leaseFile) ? readFileSync(leaseFile, 'utf8') : null;
        conn.close();
        await close().catch(() => undefined);
        if (lease !== null) writeFileSync(leaseFile, lease, { mode: 0o600 });
      },
    };
  };

  const build = async (): Promise<Built> => {
    const backends = new Map<string, FakeBackend>();
    for (const n of names) {
      backends.set(n, createFakeBackend({ ...specs[n], name: n, node: nodeId, state: states.get(n)!, root: join(root, 'backends', n) }));
    }
    const store = openStore(dbPath);
    let cluster: TestClusterNode | null = null;
    try {
      // A long lease by default: an etcd outage a test makes must not outlast it on a busy machine.
      cluster = etcd ? await joinEtcd(etcd.etcd, etcd.leaseTtlMs ?? 30_000) : null;
      const catalog: Catalog = cluster ? cluster.catalog : new SqliteCatalog(store);
      const svc = await createVolumeService({
        config: { nodeId, stateRoot, defaultBackend: names[0]!, lockWaitMs: opts.lockWaitMs ?? 10_000,
          reconcileIntervalMs: opts.reconcileIntervalMs ?? 0, targets: { allowedPrefixes: opts.targetPrefixes ?? [root] } },
        store,
        catalog,
        ...(cluster ? { cluster } : {}),
        backends: backends as Map<string, Backend>,
        exec,
        log,
        version: 'test',
        ...(opts.observer ? { observer: opts.observer } : {}),
      });
      return { backends, store, catalog, cluster, svc };
    } catch (err) {
      await cluster?.close();
      store.close();
      throw err;
    }
  };

  let current = await build();
  const h: FakeHarness = {
    root,
    dbPath,
    mode: etcd ? 'etcd' : 'embedded',
    nodeId,
    svc: current.svc,
    store: current.store,
    catalog: current.catalog,
    backends: current.backends,
    backend: current.backends.get(names[0]!)!,
    async seed(fn) {
      await h.catalog.commit(fn);
    },
    async restart({ closeOld = true } = {}) {
      if (closeOld) await h.svc.close();
      // kill -9 mid-operation: the old process's SQLite handle goes (the kernel drops its lock
      // on the file); what it still had under way can write nothing from here on.
      else h.store.close();
      await current.cluster?.crash();
      current = await build();
      h.svc = current.svc;
      h.store = current.store;
      h.catalog = current.catalog;
      h.backends = current.backends;
      h.backend = current.backends.get(names[0]!)!;
    },
    async cleanup() {
      await h.svc.close().catch(() => undefined);
      await current.cluster?.close().catch(() => undefined);
      if (!opts.root) rmSync(root, { recursive: true, force: true });
    },
  };
  return h;
}
