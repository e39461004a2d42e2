/**
 * The Docker volume plugin server: the Hono app from app.ts on the unix socket Docker
 * discovers (/run/docker/plugins/<driver>.sock). Docker finds the driver by the socket's
 * file name, so a dead socket left behind makes every unfiltered `docker volume ls`
 * wait on it: stop() removes the socket this frontend created, and start() replaces a
 * stale one but refuses one another process serves (frontends/unix-socket.ts).
 *
 * @example
 *   const docker = createDockerFrontend({ service, config: config.docker, log });
 *   await docker.start(); ... await docker.stop();
 */
import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import type { Config, Logger, VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { claimSocketPath, closeHttpServer, listenOnSocket, releaseSocketPath } from '../unix-socket.js';
import { createDockerApp } from './app.js';

export { createDockerApp, DOCKER_PLUGIN_CONTENT_TYPE } from './app.js';

/** @example const docker = createDockerFrontend({ service, config: config.docker, log }); await docker.start(); */
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
      await claimSocketPath(socket, 'docker.socket');
      const app = createDockerApp({ service: o.service, log: o.log });
      // Docker sends an empty Host header ("Host: \r\n"); without a default hostname
      // the adapter cannot build the request URL and answers 400 to every call.
      const s = createAdaptorServer({ fetch: app.fetch, hostname: 'localhost' }) as Server;
      // Docker holds connections open between calls; don't let that stall stop().
      s.keepAliveTimeout = 5_000;
      await listenOnSocket(s, socket);
      owned = true;
      server = s;
      log.info({ driver: o.config.driverName }, 'docker volume plugin listening');
    },

    async stop() {
      const s = server;
      server = null;
      if (s) {
        await closeHttpServer(s);
        log.info('docker volume plugin stopped');
      }
      if (!owned) return;
      owned = false;
      await releaseSocketPath(socket);
    },
  };
}
