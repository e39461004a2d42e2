/**
 * A real etcd (Debian's etcd-server) for a test: its own data directory under the test's
 * root, client and peer listeners on free loopback ports, stopped and removed by the root's
 * cleanup even when the test fails.
 *
 *   const etcd = await startEtcd(root);            // etcd.endpoint = 'http://127.0.0.1:PORT'
 *   await etcd.stop(); await etcd.start();         // an outage, and etcd coming back (same data, same port)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { TmpRoot } from './tmp-root.js';

export interface TestEtcd {
  /** "http://127.0.0.1:<port>". */
  readonly endpoint: string;
  readonly port: number;
  readonly dataDir: string;
  /** Starts etcd again (after stop) on the same port and data. */
  start(): Promise<void>;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** etcd's own log (all runs). */
  log(): string;
}

/** A port nobody listens on right now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

/**
 * Starts etcd under `root` and waits until it reports healthy. Ports are picked free; if
 * another process takes one between the pick and etcd's bind, etcd exits and new ports are tried.
 */
export async function startEtcd(root: TmpRoot, name = 'etcd'): Promise<TestEtcd> {
  const dataDir = root.path(`${name}-data`);
  const logFile = root.path(`${name}.log`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let port = 0;
  let peerPort = 0;

  const launch = async (): Promise<boolean> => {
    const endpoint = `http://127.0.0.1:${port}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const fd = openSync(logFile, 'a');
    const c = spawn('etcd', [
      '--name', name, '--data-dir', dataDir,
      '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `${name}=${peer}`, '--initial-cluster-state', 'new',
      '--logger', 'zap', '--log-outputs', 'stderr',
    ], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child = c;
    let dead = false;
    exited = new Promise((resolve) => c.once('exit', () => {
      dead = true;
      resolve();
    }));
    const deadline = Date.now() + 60_000;
    for (let delay = 20; Date.now() < deadline; delay = Math.min(delay * 2, 250)) {
      if (dead) return false;
      if (await healthy(endpoint)) return true;
      await new Promise((r) => setTimeout(r, delay));
    }
    throw new Error(`etcd did not become healthy within 60 s; log: ${logFile}`);
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    child = null;
  };
  root.defer(() => stop('SIGKILL'));

  for (let attempt = 0; ; attempt++) {
    [port, peerPort] = [await freePort(), await freePort()];
    if (port !== peerPort && (await launch())) break;
    if (attempt >= 4) throw new Error(`etcd would not start on free ports; log: ${logFile}\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
  }

  return {
    get endpoint() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dataDir,
    async start() {
      if (child) return;
      if (!(await launch())) throw new Error(`etcd would not start again on port ${port}; log: ${logFile}`);
    },
    stop,
    log: () => readFileSync(logFile, 'utf8'),
  };
}
