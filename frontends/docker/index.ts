/**
 * The Docker volume plugin server: the Hono app from app.ts on the unix socket Docker
 * discovers (/run/docker/plugins/<driver>.sock). Docker finds the driver by the socket's
 * file name, so a dead socket left behind makes every unfiltered `docker volume ls`
 * wait on it: stop() always removes it, and start() replaces a stale one.
 *
 * @example
 *   const docker = createDockerFrontend({ service, config: config.docker, log });
 *   await docker.start(); ... await docker.stop();
 */
import { mkdir, lstat, unlink, chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { failedPrecondition, type Config, type Logger, type VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { createDockerApp } from './app.js';

export { createDockerApp, DOCKER_PLUGIN_CONTENT_TYPE } from './app.js';

export function createDockerFrontend(o: {
  service: VolumeService;
  config: Config['docker'];
  log: Logger;
}): FrontendServer {
  const socket = o.config.socket;
  const log = o.log.child({ frontend: 'docker', socket });
  let server: Server | null = null;
  /** Set once our listener created the socket: never delete a socket another process serves. */
  let owned = false;

  return {
    name: 'docker',

    async start() {
      if (server) return;
      await mkdir(dirname(socket), { recursive: true, mode: 0o755 });
      await removeStaleSocket(socket);
      const app = createDockerApp({ service: o.service, log: o.log });
      // Docker sends an empty Host header ("Host: \r\n"); without a default hostname
      // the adapter cannot build the request URL and answers 400 to every call.
      const s = createAdaptorServer({ fetch: app.fetch, hostname: 'localhost' }) as Server;
      // Docker holds connections open between calls; don't let that stall stop().
      s.keepAliveTimeout = 5_000;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(socket, () => {
          s.off('error', reject);
          resolve();
        });
      });
      owned = true;
      server = s;
      await chmod(socket, 0o660);
      log.info({ driver: o.config.driverName }, 'docker volume plugin listening');
    },

    async stop() {
      const s = server;
      server = null;
      if (s) {
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        });
        log.info('docker volume plugin stopped');
      }
      if (!owned) return;
      owned = false;
      await unlink(socket).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
  };
}

/**
 * Removes a socket nobody answers on (left by a crash). A live one means another
 * daemon serves this driver name: refuse rather than steal it.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (st === null) return;
  if (!st.isSocket()) {
    throw failedPrecondition(`docker.socket ${path} exists and is not a socket; remove it or pick another path`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) {
    throw failedPrecondition(`docker.socket ${path} is in use by another process (is another berth running?)`);
  }
  await unlink(path);
}
