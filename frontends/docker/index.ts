/**
 * The Docker volume plugin server: the Hono app from app.ts on the unix socket Docker
 * discovers (/run/docker/plugins/<driver>.sock). Docker finds the driver by the socket's
 * file name, so a dead socket left behind makes every unfiltered `docker volume ls`
 * wait on it: stop() removes the socket this frontend created, and start() replaces a
 * stale one but refuses one another process serves (frontends/unix-socket.ts).
 *
 * With docker.tcp set, the same app also listens on that TCP address and a spec file
 * (spec-file.ts: <specDir>/<driver>.spec, or .json with TLS) tells Docker where. The plugin
 * protocol has no authentication, which is why config-load.ts accepts a plain listener on
 * loopback only; with docker.tls it is HTTPS and every client must present a certificate
 * signed by docker.tls.ca (tls.ts), which any address may then use.
 *
 * @example
 *   const docker = createDockerFrontend({ service, config: config.docker, log });
 *   await docker.start(); ... await docker.stop();
 */
import type { Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { BerthError, type Config, type Logger, type VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { claimSocketPath, closeHttpServer, listenOnSocket, releaseSocketPath } from '../unix-socket.js';
import { createDockerApp } from './app.js';
import { specUrl, writeSpecFile, type SpecFile } from './spec-file.js';
import { guardClients, loadServerTls, type ServerTlsOptions } from './tls.js';

export { createDockerApp, DOCKER_PLUGIN_CONTENT_TYPE } from './app.js';

export interface DockerFrontend extends FrontendServer {
  /** The URL written to the spec file ("tcp://127.0.0.1:<bound port>"), null without docker.tcp or before start(). */
  tcpUrl(): string | null;
}

/** "host:port", "[v6]:port" or ":port" (validated by config-load.ts) -> listen() arguments. */
function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const host = value.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '127.0.0.1' : host, port: Number(value.slice(i + 1)) };
}

function listenOnTcp(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** @example const docker = createDockerFrontend({ service, config: config.docker, log }); await docker.start(); */
export function createDockerFrontend(o: {
  service: VolumeService;
  config: Config['docker'];
  log: Logger;
  /** Group given the socket (config socketGroup); null: root only. */
  socketGroup?: number | null;
}): DockerFrontend {
  const socket = o.config.socket;
  const log = o.log.child({ frontend: 'docker', socket });
  const servers: Server[] = [];
  /** Set once our listener created the socket: never delete a socket another process serves. */
  let owned = false;
  let spec: SpecFile | null = null;

  const build = (app: ReturnType<typeof createDockerApp>, tls?: ServerTlsOptions): Server => {
    // Docker sends an empty Host header ("Host: \r\n"); without a default hostname
    // the adapter cannot build the request URL and answers 400 to every call.
    const s = (tls
      ? createAdaptorServer({ fetch: app.fetch, hostname: 'localhost', createServer: createHttpsServer, serverOptions: tls })
      : createAdaptorServer({ fetch: app.fetch, hostname: 'localhost' })) as Server;
    if (tls) guardClients(s as unknown as HttpsServer, log);
    // Docker holds connections open between calls; don't let that stall stop().
    s.keepAliveTimeout = 5_000;
    return s;
  };

  async function stop(): Promise<void> {
    // The spec file goes first: Docker must not be sent to a port that is closing.
    const s = spec;
    spec = null;
    if (s) await s.remove();
    const closing = servers.splice(0);
    await Promise.all(closing.map(closeHttpServer));
    if (closing.length) log.info('docker volume plugin stopped');
    if (!owned) return;
    owned = false;
    await releaseSocketPath(socket);
  }

  return {
    name: 'docker',
    tcpUrl: () => spec?.url ?? null,

    async start() {
      if (servers.length) return;
      await claimSocketPath(socket, 'docker.socket');
      const app = createDockerApp({ service: o.service, log: o.log });
      try {
        const unix = build(app);
        await listenOnSocket(unix, socket, o.socketGroup ?? null);
        owned = true;
        servers.push(unix);
        if (o.config.tcp !== null) {
          const tlsConfig = o.config.tls;
          const tls = tlsConfig.ca !== null ? await loadServerTls(tlsConfig) : undefined;
          const { host, port } = splitHostPort(o.config.tcp);
          const tcp = build(app, tls);
          const bound = await listenOnTcp(tcp, host, port).catch((err: NodeJS.ErrnoException) => {
            // EADDRINUSE, EADDRNOTAVAIL...: the operator fixes docker.tcp, so name it.
            throw new BerthError('FailedPrecondition', `docker.tcp: cannot listen on ${o.config.tcp}: ${err.code ?? err.message}`, { field: 'docker.tcp', cause: err });
          });
          servers.push(tcp);
          spec = await writeSpecFile(o.config.specDir, o.config.driverName, specUrl(bound, tls !== undefined), tls ? {
            caFile: tlsConfig.ca!, certFile: tlsConfig.clientCert!, keyFile: tlsConfig.clientKey!,
          } : undefined);
        }
      } catch (err) {
        await stop();
        throw err;
      }
      log.info({ driver: o.config.driverName, tcp: spec?.url ?? null, spec: spec?.path ?? null, tls: o.config.tls.ca !== null }, 'docker volume plugin listening');
    },

    stop,
  };
}
