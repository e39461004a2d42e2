/**
 * The admin API as a FrontendServer: the Hono app on a unix socket (mode 0660, its
 * directory created 0755, a stale socket from a killed daemon removed first) and,
 * only when a bearer token is configured, on a TCP listener.
 */
import { createAdaptorServer } from '@hono/node-server';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BerthError, type Config, type Logger, type VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { createAdminApp } from './app.js';
import type { DaemonInfo } from './client.js';

export interface AdminFrontendOptions {
  readonly service: VolumeService;
  readonly config: Config['admin'];
  readonly log: Logger;
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  /** GET /v1/status adds it as `daemon`. */
  readonly daemonInfo?: () => DaemonInfo;
}

/**
 * Builds the admin API server; nothing listens until start().
 * @example const admin = createAdminFrontend({ service, config: config.admin, log }); await admin.start();
 */
export function createAdminFrontend(o: AdminFrontendOptions): FrontendServer {
  const { config, log } = o;
  const servers: Server[] = [];
  let socketCreated = false;

  async function listen(server: Server, target: string | { host: string; port: number }): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const done = () => {
        server.off('error', reject);
        resolve();
      };
      if (typeof target === 'string') server.listen(target, done);
      else server.listen(target.port, target.host, done);
    });
    servers.push(server);
  }

  return {
    name: 'admin',
    async start() {
      if (config.tcp !== null && !config.token) {
        throw new BerthError('InvalidArgument', 'admin.token: the TCP admin listener requires a bearer token', { field: 'admin.token' });
      }
      await mkdir(dirname(config.socket), { recursive: true, mode: 0o755 });
      await removeStaleSocket(config.socket);
      const unixApp = createAdminApp({ service: o.service, log, metrics: o.metrics, daemonInfo: o.daemonInfo });
      await listen(createAdaptorServer({ fetch: unixApp.fetch }) as Server, config.socket);
      socketCreated = true;
      await chmod(config.socket, 0o660);
      if (config.tcp !== null) {
        const i = config.tcp.lastIndexOf(':');
        const host = config.tcp.slice(0, i) || '127.0.0.1';
        const port = Number(config.tcp.slice(i + 1));
        const tcpApp = createAdminApp({ service: o.service, log, metrics: o.metrics, daemonInfo: o.daemonInfo, token: config.token });
        await listen(createAdaptorServer({ fetch: tcpApp.fetch }) as Server, { host, port });
      }
      log.info({ socket: config.socket, tcp: config.tcp }, 'admin API listening');
    },
    async stop() {
      const closing = servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      );
      await Promise.all(closing);
      if (socketCreated) {
        socketCreated = false;
        await unlink(config.socket).catch(() => undefined);
      }
    },
  };
}

/**
 * Removes a socket file left by a daemon that died without cleaning up. A socket that
 * still answers belongs to a live daemon: refuse instead of stealing it.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => null);
  if (st === null) return;
  if (!st.isSocket()) {
    throw new BerthError('FailedPrecondition', `${path} exists and is not a socket; refusing to replace it`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new BerthError('FailedPrecondition', `another process is listening on ${path}`);
  await unlink(path);
}
