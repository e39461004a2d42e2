/**
 * The composition root: the only place the daemon's parts meet.
 *   Config -> state root claim + Store (<stateRoot>/state.db, state-root.ts) -> Exec -> backends (builtinDrivers)
 *          -> [cluster mode: etcd session + catalog + membership (joinCluster)]
 *          -> VolumeService (reconciles before it returns) -> [cluster mode: enter the leader election]
 *          -> frontends (admin, docker, csi).
 * Everything is built here and passed down; nothing below holds module-level state.
 * Shutdown runs in reverse: frontends stop (sockets removed), the service closes, the store closes.
 */
import {
  createBackends, createExec, createVolumeService, joinCluster, tightenDirs, tightenLogFiles, withTestHolds, type ClusterNode, type Config,
  type CoreVolumeService, type Logger,
} from '../core/index.js';
import { builtinDrivers } from '../backends/index.js';
import type { DaemonInfo } from '../frontends/admin/client.js';
import { createAdminFrontend } from '../frontends/admin/server.js';
import { createCsiFrontend } from '../frontends/csi/index.js';
import { createDockerFrontend } from '../frontends/docker/index.js';
import type { FrontendServer } from '../frontends/types.js';
import { createMetrics } from './metrics.js';
import { claimStateRoot } from './state-root.js';
import { keepFenceAgent } from './agent-keeper.js';

export interface RunningDaemon {
  readonly config: Config;
  readonly service: CoreVolumeService;
  /** Stops every frontend (removing its socket), closes the service and the store. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Builds and starts everything; on any failure it undoes what it started and rethrows.
 * @example const d = await startDaemon(config, { log, version: '0.1.0' }); ...; await d.stop();
 */
export async function startDaemon(config: Config, o: {
  log: Logger;
  version: string;
  configFile?: string | null;
  /** Crash tests only (BERTH_TEST_HOLDS): a socket every backend step waits on (core/test-holds.ts). */
  testHolds?: string | null;
}): Promise<RunningDaemon> {
  const { log, version } = o;
  const undo: Array<() => Promise<void> | void> = [];
  const unwind = async () => {
    for (const fn of undo.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, 'shutdown step failed');
      }
    }
  };

  try {
    // Like dockerd: the modes berth asks for are the modes files get (a volume's root 0755,
    // private state 0700 / 0600), whatever umask the daemon was started with.
    process.umask(0o022);
    // Before anything touches the state: a second daemon on the same state root would
    // reconcile (unmount, detach) what the running one manages. Needs no free space.
    const claimed = await claimStateRoot(config.stateRoot, log);
    const store = claimed.store;
    undo.push(() => claimed.releasePidFile());
    undo.push(() => store.close());
    const exec = createExec();
    const built = await createBackends({ config, drivers: builtinDrivers, exec, log });
    const backends = o.testHolds ? withTestHolds(built, { socket: o.testHolds, log }) : built;
    const tightened = [...claimed.tightened, ...(await tightenDirs([...built.values()].flatMap((b) => b.privateDirs()))), ...(await tightenLogFiles())];
    if (tightened.length) {
      log.warn({ tightened: tightened.map((c) => `${c.path} ${c.from} -> ${c.to}`) }, 'took access to berth\'s state away from other users (left open by an older berth or a loose umask)');
    }

    let service: CoreVolumeService | null = null;
    let cluster: ClusterNode | null = null;
    if (config.cluster.etcd.endpoints.length > 0) {
      const joined = await joinCluster({
        config, log, version,
        backends: [...built.values()].map((b) => ({ name: b.name, driver: b.driver, shared: b.capabilities.scope === 'global' })),
      });
      cluster = joined;
      undo.push(() => joined.close());
      if (config.cluster.fenceAgent) {
        const keeper = await keepFenceAgent({ config, log });
        // Runs before the service closes: it still knows what this node holds.
        undo.push(() => keeper.stop(service !== null && service.status().cluster.mode === 'etcd' && holdsExclusive(service)));
      }
    }

    const metrics = createMetrics({ volumes: () => service?.status().volumes ?? 0 });
    service = await createVolumeService({
      config, store, backends, exec, log, version, observer: metrics.observe,
      ...(cluster ? { catalog: cluster.catalog, cluster } : {}),
    });
    const svc = service;
    undo.push(() => svc.close());
    // Back from an etcd outage longer than the lease: what failed meanwhile is settled now.
    cluster?.onReconnect(() => svc.rejoined());
    if (cluster) {
      // Candidate for leader of cluster-wide work (core/leader.ts) only once this node has
      // reconciled; on the way down it resigns first, so another node leads at once.
      const election = cluster.election;
      election.start();
      undo.push(() => election.resign());
    }

    const socketGroup = config.socketGroup;
    const docker = config.docker.enabled ? createDockerFrontend({ service: svc, config: config.docker, log, socketGroup }) : null;
    const daemonInfo = describeDaemon(config, o.configFile ?? null, () => docker?.tcpUrl() ?? null);
    const frontends: FrontendServer[] = [];
    if (docker) frontends.push(docker);
    if (config.csi.enabled) frontends.push(createCsiFrontend({ service: svc, config: config.csi, nodeId: config.nodeId, version, log, socketGroup }));
    // The admin API starts last (and so stops first): once `berth status` answers, the Docker
    // socket, its spec file and the CSI endpoint are all there (install.sh and the tests wait
    // on it); started first, a caller could see "ready" a few ms before they were.
    frontends.push(createAdminFrontend({ service: svc, config: config.admin, log, metrics: metrics.render, daemonInfo, socketGroup }));
    for (const f of frontends) {
      await f.start();
      undo.push(() => f.stop());
    }
    log.info({ version, nodeId: config.nodeId, stateRoot: config.stateRoot, frontends: frontends.map((f) => f.name) }, 'berth daemon ready');

    let stopped: Promise<void> | null = null;
    return {
      config,
      service: svc,
      stop: () => (stopped ??= unwind()),
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** What `berth status` shows an operator beyond the core's status: where this daemon listens and keeps state. */
function describeDaemon(config: Config, configFile: string | null, dockerTcp: () => string | null): () => DaemonInfo {
  return () => ({
    pid: process.pid,
    stateRoot: config.stateRoot,
    configFile,
    adminSocket: config.admin.socket,
    adminTcp: config.admin.tcp,
    // The bound URL, not docker.tcp: a configured port 0 becomes the port the kernel gave.
    docker: config.docker.enabled ? { driverName: config.docker.driverName, socket: config.docker.socket, tcp: dockerTcp() } : null,
    csi: config.csi.enabled ? { driverName: config.csi.driverName, endpoint: config.csi.endpoint, mode: config.csi.mode } : null,
    logLevel: config.log.level,
  });
}

/** Whether this node holds a single-node volume for writing (its fence agent must then stay). */
function holdsExclusive(service: CoreVolumeService): boolean {
  const node = service.nodeId;
  return service.nodes().find((n) => n.id === node)?.attachedVolumes !== 0;
}
