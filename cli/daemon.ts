/**
 * The composition root: the only place the daemon's parts meet.
 *   Config -> Exec -> backends (builtinDrivers) -> Store (<stateRoot>/state.db)
 *          -> VolumeService (reconciles before it returns) -> frontends (admin, docker, csi).
 * Everything is built here and passed down; nothing below holds module-level state.
 * Shutdown runs in reverse: frontends stop (sockets removed), the service closes, the store closes.
 */
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError, createBackends, createExec, createVolumeService, openStore, withTestHolds, type Config, type CoreVolumeService, type Logger,
} from '../core/index.js';

import { builtinDrivers } from '../backends/index.js';
import type { DaemonInfo } from '../frontends/admin/client.js';
import { createAdminFrontend } from '../frontends/admin/server.js';
import { createCsiFrontend } from '../frontends/csi/index.js';
import { createDockerFrontend } from '../frontends/docker/index.js';
import type { FrontendServer } from '../frontends/types.js';
import { createMetrics } from './metrics.js';

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
    await mkdir(config.stateRoot, { recursive: true, mode: 0o755 });
    // Before anything touches the state: a second daemon on the same state root would
    // reconcile (unmount, detach) what the running one manages.
    await claimStateRoot(config.stateRoot);
    undo.push(() => rm(join(config.stateRoot, PID_FILE), { force: true }));
    const exec = createExec();
    const built = await createBackends({ config, drivers: builtinDrivers, exec, log });
    const backends = o.testHolds ? withTestHolds(built, { socket: o.testHolds, log }) : built;
    const store = openStore(join(config.stateRoot, 'state.db'));
    undo.push(() => store.close());

    let service: CoreVolumeService | null = null;
    const metrics = createMetrics({ volumes: () => service?.status().volumes ?? 0 });
    service = await createVolumeService({
      config, store, backends, exec, log, version, observer: metrics.observe,
    });
    const svc = service;
    undo.push(() => svc.close());

    const docker = config.docker.enabled ? createDockerFrontend({ service: svc, config: config.docker, log }) : null;
    const daemonInfo = describeDaemon(config, o.configFile ?? null, () => docker?.tcpUrl() ?? null);
    const frontends: FrontendServer[] = [];
    if (docker) frontends.push(docker);
    if (config.csi.enabled) frontends.push(createCsiFrontend({ service: svc, config: config.csi, nodeId: config.nodeId, version, log }));
    // The admin API starts last (and so stops first): once `berth status` answers, the Docker
    // socket, its spec file and the CSI endpoint are all there (install.sh and the tests wait
    // on it); started first, a caller could see "ready" a few ms before they were.
    frontends.push(createAdminFrontend({ service: svc, config: config.admin, log, metrics: metrics.render, daemonInfo }));
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

const PID_FILE = 'daemon.pid';

/**
 * Records this daemon's pid in <stateRoot>/daemon.pid, refusing when the recorded pid is a
 * live berth process (after kill -9 the file names a dead one and is taken over). The file
 * is written whole under a temporary name and hard-linked into place, which fails when the
 * name exists: of two daemons starting at once on one state root exactly one gets it, and
 * nobody ever reads a half-written pid.
 */
async function claimStateRoot(stateRoot: string): Promise<void> {
  const file = join(stateRoot, PID_FILE);
  const mine = `${file}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(mine, file);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const text = await readFile(file, 'utf8').catch(() => '');
      const recorded = Number(text.trim());
      if (recorded === process.pid) return;
      if (Number.isInteger(recorded) && recorded > 0 && (await isBerthProcess(recorded))) {
        throw new BerthError('FailedPrecondition', `another berth daemon (pid ${recorded}) is using the state root ${stateRoot}`);
      }
      // Stale: take it over, unless another starting daemon replaced it meanwhile.
      if ((await readFile(file, 'utf8').catch(() => '')) === text) await rm(file, { force: true });
    }
    throw new BerthError('FailedPrecondition', `cannot claim ${file}: other berth daemons keep starting on the state root ${stateRoot}`);
  } finally {
    await rm(mine, { force: true });
  }
}

async function isBerthProcess(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('berth');
}
