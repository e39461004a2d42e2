/**
 * Joining a cluster: one etcd connection, the node's session lease, the catalog (listed and
 * watched) and the node's membership, built from `cluster.etcd`. The daemon calls this
 * before the volume service exists, so the first reconcile already sees the cluster.
 *
 * Start-up waits for etcd (a node with no catalog cannot tell what it may touch), saying so
 * every few seconds; afterwards an unreachable etcd only fails operations (Unavailable), and
 * `onReconnect` callbacks run when the session gets a new lease (etcd back after an outage
 * longer than the lease), so the node reconciles on its own.
 */
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { EtcdCatalog } from './etcd.js';
import { EtcdSession } from './etcd-session.js';
import { LeaderElection } from './election.js';
import { Membership } from './membership.js';
import type { ClusterBaseStatus, NodeRecord, NodeStatus } from './nodes.js';

export interface ClusterNode {
  readonly catalog: EtcdCatalog;
  readonly session: EtcdSession;
  /** The leader election; the daemon enters it (start()) once the node has reconciled. */
  readonly election: LeaderElection;
  /** Every node the catalog knows. */
  nodes(): NodeStatus[];
  /** What `berth status` shows about this node's place in the cluster (the service adds its guard's part). */
  status(): ClusterBaseStatus;
  /** Milliseconds since the node lease was last renewed (Infinity without one): the self-fence clock. */
  sinceRenewal(): number;
  readonly selfFenceMs: number;
  /** Renews the node lease now (or obtains one); resolves either way. */
  renewNow(): Promise<void>;
  /** Called (not awaited) whenever the node got a new lease after losing one. */
  onReconnect(cb: () => void): void;
  /** Leaves the cluster: leadership resigned, presence removed, lease revoked, watch and connection closed. */
  close(): Promise<void>;
}

export interface JoinOptions {
  readonly config: Pick<Config, 'nodeId' | 'cluster' | 'admin' | 'docker' | 'stateRoot'>;
  readonly log: Logger;
  readonly version: string;
  readonly backends: NodeRecord['backends'];
  /** Give up waiting for etcd at start-up after this long (default: wait on). */
  readonly startTimeoutMs?: number;
}

/** The addresses a node announces: its configured TCP listeners, else the host's own addresses. */
function addresses(config: JoinOptions['config']): string[] {
  const out: string[] = [];
  if (config.admin.tcp) out.push(`admin ${config.admin.tcp}`);
  if (config.docker.enabled && config.docker.tcp) out.push(`docker ${config.docker.tcp}`);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(a.address);
  }
  return out;
}

/**
 * @example const cluster = await joinCluster({ config, log, version, backends }); ... await cluster.close();
 */
export async function joinCluster(o: JoinOptions): Promise<ClusterNode> {
  const c = o.config.cluster;
  const log = o.log.child({ cluster: c.etcd.prefix });
  // Loaded here, not with the module: the etcd client (etcd3, its gRPC stubs, cockatiel) costs
  // a single-node daemon, which never uses it, a fifth of a second of CPU at every start.
  const { connectEtcd } = await import('./etcd-client.js');
  const conn = connectEtcd({ endpoints: c.etcd.endpoints, prefix: c.etcd.prefix, tls: c.etcd.tls, timeoutMs: c.etcd.timeoutMs });
  const session = new EtcdSession(conn, { ttlMs: c.leaseTtlMs, log, leaseFile: join(o.config.stateRoot, 'cluster.lease') });
  const catalog = new EtcdCatalog({ conn, session, log });
  const startedAt = new Date().toISOString();
  const membership = new Membership({
    conn, session, view: catalog.view, log,
    self: () => ({
      id: o.config.nodeId, addresses: addresses(o.config), version: o.version, backends: o.backends, startedAt, fenceAgent: c.fenceAgent,
    }),
  });
  const deadline = o.startTimeoutMs === undefined ? Infinity : Date.now() + o.startTimeoutMs;
  try {
    for (let delay = 200, said = 0; ; delay = Math.min(delay * 2, 2_000)) {
      try {
        await catalog.start();
        await membership.start();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        if (Date.now() - said > 5_000) {
          said = Date.now();
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster: waiting for etcd');
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  } catch (err) {
    await catalog.close();
    await session.close();
    conn.close();
    throw err;
  }
  log.info({ node: o.config.nodeId, endpoints: c.etcd.endpoints, volumes: catalog.countVolumes() }, 'cluster: joined');
  // The first lease was granted while joining: every grant from now on follows a lost lease.
  const election = new LeaderElection({ conn, session, view: catalog.view, nodeId: o.config.nodeId, log, stopAfterMs: c.selfFenceMs });
  const reconnects: Array<() => void> = [];
  session.on('granted', () => {
    for (const cb of reconnects) cb();
  });
  return {
    catalog,
    session,
    election,
    nodes: () => membership.list(),
    sinceRenewal: () => session.sinceRenewal(),
    renewNow: () => session.renewNow(),
    selfFenceMs: c.selfFenceMs,
    status: () => ({
      mode: 'etcd',
      endpoints: [...c.etcd.endpoints],
      prefix: c.etcd.prefix,
      lease: session.current,
      sinceRenewalMs: Number.isFinite(session.sinceRenewal()) ? Math.round(session.sinceRenewal()) : null,
      leaseTtlMs: c.leaseTtlMs,
      nodes: catalog.view.listNodes().length,
      leader: election.leader(),
    }),
    onReconnect: (cb) => void reconnects.push(cb),
    async close() {
      await election.resign();
      await membership.stop();
      await catalog.close();
      await session.close();
      conn.close();
    },
  };
}
