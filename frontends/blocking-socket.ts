/**
 * Blocking unix-socket connections for the per-call executables (dvdcli, the FlexVolume
 * driver), through the client-side addon build/Release/berth_sock.node (native/sock.c). Such
 * a process makes a request or two and exits, with nothing else to run meanwhile: waiting on
 * its JS thread costs it nothing, while node:net and the streams it loads cost ~4 ms of a
 * ~70 ms start. http1-client.ts uses a connection made here wherever its target carries the
 * addon, and node:net otherwise (TCP, TLS, the `berth` client, the daemon, no addon).
 *
 * A connection is shaped like the part of a net.Socket http1-client.ts uses. Its reply is read
 * in a setImmediate after the write, so requests written in the same turn (dvdcli's Get beside
 * Plugin.Activate) all reach the server before the process waits for the first answer.
 * Connect errors are thrown as node:net reports them (code ENOENT, ECONNREFUSED, ...); a
 * silence longer than the timeout ends the connection through its timeout callback.
 *
 * @example
 *   const sockets = loadBlockingSockets(['/opt/berth/build/Release/berth_sock.node']);
 *   const res = await http1Request({ socketPath: '/run/berth/berth.sock', sockets }, { method: 'GET', path: '/v1/status' });
 */
import { join } from 'node:path';

/** The addon's functions (native/sock.c). */
export interface BlockingSockets {
  /** A connected stream socket's fd; timeoutMs > 0 bounds every later wait on it (0: none). */
  connect(path: string, timeoutMs: number): number;
  /** Writes all of `data`. */
  send(fd: number, data: Buffer): void;
  /** What has arrived, up to `max` bytes; null at the end of the stream. */
  recv(fd: number, max: number): Buffer | null;
  close(fd: number): void;
}

/** The part of a net.Socket that http1-client.ts uses. */
export interface Connection {
  setTimeout(ms: number, onTimeout: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  write(data: string): unknown;
  destroy(): unknown;
}

/** The addon's file name under build/Release. */
export const SOCK_ADDON_FILE = 'berth_sock.node';

/**
 * The addon of the package a file in `dir` belongs to: <package>/build/Release beside
 * <package>/dist (the bundles) or <package>/frontends (this module's tests). Nothing outside
 * the package is ever looked at.
 */
export function sockAddonBeside(dir: string): string {
  return join(dir, '..', 'build', 'Release', SOCK_ADDON_FILE);
}

/** Largest piece read at once. */
const READ_BYTES = 64 * 1024;

/**
 * Loads the addon from the first of `candidates` that loads; null when none does (the caller
 * then uses node:net). Never throws: a missing or foreign addon only costs speed.
 */
export function loadBlockingSockets(candidates: readonly string[]): BlockingSockets | null {
  for (const path of candidates) {
    try {
      const mod = { exports: {} as Partial<BlockingSockets> };
      process.dlopen(mod, path);
      const e = mod.exports;
      if (typeof e.connect === 'function' && typeof e.send === 'function' && typeof e.recv === 'function' && typeof e.close === 'function') {
        return e as BlockingSockets;
      }
    } catch {
      /* not there, or not loadable by this node: try the next */
    }
  }
  return null;
}

/**
 * Connects to the unix socket at `path` (throws as node:net would report the failure).
 * `timeoutMs` (0: none) is the longest silence allowed; the callback given to setTimeout
 * runs when it passes, and must be given the same figure.
 */
export function blockingConnection(sockets: BlockingSockets, path: string, timeoutMs: number): Connection {
  const fd = sockets.connect(path, timeoutMs);
  const dataListeners: ((chunk: Buffer) => void)[] = [];
  const endListeners: (() => void)[] = [];
  const errorListeners: ((err: Error) => void)[] = [];
  let onTimeout: (() => void) | null = null;
  let closed = false;

  const close = () => {
    if (closed) return;
    closed = true;
    sockets.close(fd);
  };
  const fail = (err: NodeJS.ErrnoException) => {
    if (closed) return;
    close();
    if (err.code === 'ETIMEDOUT' && onTimeout) onTimeout();
    else for (const l of errorListeners) l(err);
  };
  // Until the end of the stream, or until a listener closes the connection (reply complete).
  const pump = () => {
    while (!closed) {
      let chunk: Buffer | null;
      try {
        chunk = sockets.recv(fd, READ_BYTES);
      } catch (err) {
        fail(err as NodeJS.ErrnoException);
        return;
      }
      if (chunk === null) {
        for (const l of endListeners) l();
        close();
        return;
      }
      for (const l of dataListeners) l(chunk);
    }
  };

  const connection: Connection = {
    setTimeout(ms, listener) {
      if (ms !== timeoutMs) throw new RangeError(`blockingConnection: timeout ${ms} ms differs from the ${timeoutMs} ms it was connected with`);
      onTimeout = listener;
      return connection;
    },
    on(event: 'error' | 'data' | 'end', listener: (arg: never) => void) {
      if (event === 'data') dataListeners.push(listener as (chunk: Buffer) => void);
      else if (event === 'end') endListeners.push(listener as () => void);
      else errorListeners.push(listener as (err: Error) => void);
      return connection;
    },
    write(data) {
      try {
        sockets.send(fd, Buffer.from(data));
        setImmediate(pump);
      } catch (err) {
        setImmediate(() => fail(err as NodeJS.ErrnoException));
      }
      return true;
    },
    destroy: close,
  };
  return connection;
}
