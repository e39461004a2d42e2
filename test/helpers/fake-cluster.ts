/**
 * Cluster-mode volume services in one process, for unit tests of the frontends: one real etcd
 * (test/helpers/etcd.ts) and, per node, a real SQLite store, the node's own lease and
 * membership in etcd (joinCluster, as the daemon does it) and fake backends. A backend marked
 * `shared` is one storage every node reaches (one FakeState, scope global); any other is each
 * node's own (scope local). The root's cleanup closes every node, then stops etcd.
 *
 *   const c = await startFakeCluster(roots.create('csi-cluster'), { nodes: ['a', 'b'] });
 *   await c.node('a').svc.create({ name: 'pg', backend: 'shared' }, { frontend: 'csi' });
 *   c.node('b').svc.nodes();   // a and b, alive
 */
import { mkdirSync } from 'node:fs';
import type { Backend } from '../../core/backend.js';
import { joinCluster } from '../../core/catalog/cluster.js';
import { defaultConfig } from '../../core/config.js';
import { createSilentLogger } from '../../core/log.js';
import { createExec } from '../../core/os/exec.js';
import { openStore } from '../../core/store/sqlite.js';
import { createVolumeService, type CoreVolumeService } from '../../core/volume-service.js';
import { createFakeBackend, createFakeState, type FakeBackend, type FakeBackendOptions, type FakeState } from '../../test/fake/fake.js';
import { startEtcd, type TestEtcd } from './etcd.js';
import type { TmpRoot } from './tmp-root.js';

export type FakeClusterBackend = Omit<FakeBackendOptions, 'name' | 'state' | 'root'> & {
  /** One storage reachable from every node (capabilities.scope 'global'). */
  readonly shared?: boolean;
};

export interface FakeClusterOptions {
  readonly nodes: readonly string[];
  /** Backend instances by name; the first is the default. Default: `local` (per node) and `shared`. */
  readonly backends?: Record<string, FakeClusterBackend>;
  /** Default 30 s: long enough that a busy machine never loses a lease during a unit test. */
  readonly leaseTtlMs?: number;
}

export interface FakeClusterNode {
  readonly id: string;
  readonly svc: CoreVolumeService;
  readonly backends: ReadonlyMap<string, FakeBackend>;
  readonly stateRoot: string;
  /**
   * The node's daemon goes away and nothing of berth is left there (no fence agent): its
   * lease is revoked, so it is no candidate for leader and has no presence; what it held
   * stays in the catalog. Safe to call twice (the root's cleanup calls it too).
   */
  stop(): Promise<void>;
}

export interface FakeCluster {
  readonly etcd: TestEtcd;
  readonly nodes: readonly FakeClusterNode[];
  node(id: string): FakeClusterNode;
}

/** @example const c = await startFakeCluster(root, { nodes: ['a', 'b'] }); */
export async function startFakeCluster(root: TmpRoot, o: FakeClusterOptions): Promise<FakeCluster> {
  const etcd = await startEtcd(root);
  const specs = o.backends ?? { local: {}, shared: { shared: true } };
  const names = Object.keys(specs);
  const sharedStates = new Map<string, FakeState>(names.filter((n) => specs[n]!.shared).map((n) => [n, createFakeState()]));
  const leaseTtlMs = o.leaseTtlMs ?? 30_000;
  const log = createSilentLogger();
  const nodes: FakeClusterNode[] = [];
  for (const id of o.nodes) {
    const stateRoot = root.path('nodes', id, 'state');
    mkdirSync(stateRoot, { recursive: true, mode: 0o700 });
    const backends = new Map<string, FakeBackend>();
    for (const n of names) {
      const { shared, ...spec } = specs[n]!;
      const state = shared ? sharedStates.get(n)! : createFakeState();
      backends.set(n, createFakeBackend({
        ...spec,
        name: n,
        node: id,
        state,
        root: shared ? root.path('shared', n) : root.path('nodes', id, 'backends', n),
        capabilities: { ...spec.capabilities, scope: shared ? 'global' : 'local' },
      }));
    }
    const base = defaultConfig();
    const config = {
      ...base,
      nodeId: id,
      stateRoot,
      defaultBackend: names[0]!,
      lockWaitMs: 10_000,
      targets: { allowedPrefixes: [root.dir] },
      cluster: {
        etcd: { ...base.cluster.etcd, endpoints: [etcd.endpoint], timeoutMs: 5_000 },
        leaseTtlMs,
        selfFenceMs: leaseTtlMs - 5_000,
        fenceAgent: false,
      },
    };
    const cluster = await joinCluster({
      config, log, version: 'test',
      backends: [...backends.values()].map((b) => ({ name: b.name, driver: b.driver, shared: b.capabilities.scope === 'global' })),
      startTimeoutMs: 20_000,
    });
    let svc: CoreVolumeService;
    try {
      svc = await createVolumeService({
        config, store: openStore(root.path('nodes', id, 'state.db')), backends: backends as Map<string, Backend>,
        exec: createExec(), log, version: 'test', catalog: cluster.catalog, cluster,
      });
    } catch (err) {
      await cluster.close();
      throw err;
    }
    cluster.election.start();
    let stopped: Promise<void> | null = null;
    const stop = () => (stopped ??= (async () => {
      await cluster.election.resign();
      await svc.close().catch(() => undefined);
      await cluster.close();
    })());
    root.defer(stop);
    nodes.push({ id, svc, backends, stateRoot, stop });
  }
  return {
    etcd,
    nodes,
    node(id) {
      const n = nodes.find((x) => x.id === id);
      if (!n) throw new Error(`no fake cluster node ${id}`);
      return n;
    },
  };
}
