/**
 * The life of a socket file a frontend listens on (admin API, Docker plugin, CSI), in one
 * place so every frontend behaves the same after a crash:
 * - claim: create the directory (0755); a socket file nobody answers on (left by kill -9)
 *   is removed; a socket that still answers belongs to another live process and is
 *   refused, as is any path that is not a socket: FailedPrecondition naming the config key.
 * - release: remove the socket file, but only a frontend that claimed it calls this, so a
 *   frontend whose start() was refused never deletes another process's socket.
 * - access: every socket is mode 0660, owned by root and by config socketGroup when one is
 *   set (its members may use the socket; nobody else can connect). Until the mode is set
 *   the socket has the daemon's umask (022: 0755), which lets nobody but root connect.
 *
 * @example
 *   await claimSocketPath(config.socket, 'docker.socket');
 *   await listenOnSocket(server, config.socket);   // http servers; gRPC binds on its own
 *   ...
 *   await closeHttpServer(server);
 *   await releaseSocketPath(config.socket);
 */
import { chmod, chown, lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { failedPrecondition } from '../core/index.js';

/** Consumers (Docker, kubelet, the CLI) run as root or in the socket's group. */
const SOCKET_MODE = 0o660;

const ignoreMissing = (err: NodeJS.ErrnoException): null => {
  if (err.code === 'ENOENT') return null;
  throw err;
};

/** Whether something accepts connections on the socket at `path` (or abstract name). */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Makes `path` free to listen on. `field` is the config key that named it, so the error
 * tells the operator which setting to change.
 */
export async function claimSocketPath(path: string, field: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // lstat: a symlink at the path is refused like any other non-socket, never followed.
  const st = await lstat(path).catch(ignoreMissing);
  if (st === null) return;
  if (!st.isSocket()) {
    throw failedPrecondition(`${field}: ${path} exists and is not a socket; remove it or choose another path`);
  }
  if (await socketAnswers(path)) {
    throw failedPrecondition(`${field}: ${path} is in use by another process (is another berth running?)`);
  }
  await unlink(path).catch(ignoreMissing);
}

/** Removes the socket file; already gone is fine. */
export async function releaseSocketPath(path: string): Promise<void> {
  await unlink(path).catch(ignoreMissing);
}

/**
 * Gives the socket at `path` mode 0660 and, when `group` is a gid, that group.
 * @example await setSocketAccess('/run/berth/csi.sock', config.socketGroup);
 */
export async function setSocketAccess(path: string, group: number | null): Promise<void> {
  if (group !== null) await chown(path, -1, group);
  await chmod(path, SOCKET_MODE);
}

/** Listens on the (claimed) unix socket `path` and sets its access; on failure nothing is left listening. */
export async function listenOnSocket(server: Server, path: string, group: number | null = null): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  try {
    await setSocketAccess(path, group);
  } catch (err) {
    await closeHttpServer(server);
    await releaseSocketPath(path);
    throw err;
  }
}

/** Stops accepting and drops idle keep-alive connections (Docker holds them open), so stop() never waits on a client. */
export function closeHttpServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
