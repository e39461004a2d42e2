/**
 * The admin API as a FrontendServer: the Hono app on a unix socket (its life — stale
 * socket removed, live one refused, mode 0660 — is frontends/unix-socket.ts, shared with
 * Docker and CSI) and, only when a bearer token is configured, on a TCP listener.
 */
import { createAdaptorServer } from '@hono/node-server';
import type { Server } from 'node:http';
import { BerthError, type Config, type Logger, type VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { claimSocketPath, closeHttpServer, listenOnSocket, releaseSocketPath } from '../unix-socket.js';
import { createAdminApp } from './app.js';
import type { DaemonInfo } from './client.js';

export interface AdminFrontendOptions {
  readonly service: VolumeService;
  readonly config: Config['admin'];
  readonly log: Logger;
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  /** GET /v1/status adds it as `daemon`. */
  readonly daemonInfo?: () => DaemonInfo;
  /** Group given the socket (config socketGroup); null: root only. */
  readonly socketGroup?: number | null;
}

/**
 * Builds the admin API server; nothing listens until start().
 * @example const admin = createAdminFrontend({ service, config: config.admin, log }); await admin.start();
 */
export function createAdminFrontend(o: AdminFrontendOptions): FrontendServer {
  const { config, log } = o;
  const servers: Server[] = [];
  let socketClaimed = false;

  const build = (token?: string | null) =>
    createAdaptorServer({
      fetch: createAdminApp({ service: o.service, log, metrics: o.metrics, daemonInfo: o.daemonInfo, ...(token ? { token } : {}) }).fetch,
    }) as Server;

  async function stopServers(): Promise<void> {
    await Promise.all(servers.splice(0).map(closeHttpServer));
    if (socketClaimed) {
      socketClaimed = false;
      await releaseSocketPath(config.socket);
    }
  }

  return {
    name: 'admin',
    async start() {
      if (config.tcp !== null && !config.token) {
        throw new BerthError('InvalidArgument', 'admin.token: the TCP admin listener requires a bearer token', { field: 'admin.token' });
      }
      await claimSocketPath(config.socket, 'admin.socket');
      socketClaimed = true;
      try {
        const unix = build();
        await listenOnSocket(unix, config.socket, o.socketGroup ?? null);
        servers.push(unix);
        if (config.tcp !== null) {
          const i = config.tcp.lastIndexOf(':');
          const host = config.tcp.slice(0, i) || '127.0.0.1';
          const port = Number(config.tcp.slice(i + 1));
          const tcp = build(config.token);
          await new Promise<void>((resolve, reject) => {
            tcp.once('error', reject);
            tcp.listen(port, host, () => {
              tcp.off('error', reject);
              resolve();
            });
          });
          servers.push(tcp);
        }
      } catch (err) {
        await stopServers();
        throw err;
      }
      log.info({ socket: config.socket, tcp: config.tcp }, 'admin API listening');
    },
    stop: stopServers,
  };
}
