/**
 * A real berth daemon for integration tests: `node dist/berth.js serve --config <root>/config.yaml`
 * with everything (state root, admin socket, docker socket, CSI endpoint) inside a TmpRoot.
 * Docker and CSI are off unless asked. The daemon is stopped by the root's cleanup.
 *
 *   const d = await startTestDaemon(roots.create('x'));          // dir "local" + loop "loop"
 *   await d.client.createVolume({ name: 'v', backend: 'loop', size: '64MiB' });
 *   const r = await d.berth(['volume', 'ls', '--output', 'json']); // the CLI against this daemon
 *   await d.kill();  await d.start();                              // kill -9 and restart
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { createAdminClient, type AdminClient } from '../../frontends/admin/client.js';
import type { TmpRoot } from './tmp-root.js';

export const REPO_ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const BERTH_JS = join(REPO_ROOT, 'dist', 'berth.js');

export interface TestDaemonOptions {
  /** Backend instances; default { local: dir, loop: loop }. */
  readonly backends?: Record<string, Record<string, unknown>>;
  readonly defaultBackend?: string;
  readonly docker?: boolean;
  readonly csi?: boolean;
  /** Extra config keys, merged one level deep over the generated ones (`backends` is replaced whole). */
  readonly config?: Record<string, unknown>;
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Extra environment for the daemon process, on every (re)start (e.g. BERTH_TEST_HOLDS). */
  readonly env?: Record<string, string>;
  /** Keep this daemon's files under <root>/<subdir> (several daemons in one root: cluster tests). */
  readonly subdir?: string;
  /** A command the daemon runs under, e.g. ['nsenter', '-t', PID, '-m', '--'] (a node's own mount namespace). */
  readonly wrap?: () => readonly string[];
  /** Another build's dist/berth.js (benchmarks: an earlier commit beside this one); default this checkout's. */
  readonly berthJs?: string;
  /**
   * Stack traces mapped to the TypeScript sources (node --enable-source-maps), for tests;
   * default true. Benchmarks turn it off: an installed daemon runs without it.
   */
  readonly sourceMaps?: boolean;
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface TestDaemon {
  readonly root: TmpRoot;
  readonly configFile: string;
  readonly stateRoot: string;
  readonly socket: string;
  readonly dockerSocket: string;
  readonly csiEndpoint: string;
  readonly logFile: string;
  /** Admin client on this daemon's socket. */
  readonly client: AdminClient;
  /** Pid of the running daemon, null when stopped. */
  pid(): number | null;
  /** (Re)starts with the same config and waits until the admin API answers. */
  start(): Promise<void>;
  /** Sends the signal (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, waits, returns the exit code. */
  stop(): Promise<number | null>;
  /** Runs the `berth` CLI against this daemon's socket. */
  berth(args: readonly string[], env?: Record<string, string>): Promise<CliResult>;
  /** Everything the daemon wrote to stdout/stderr (all runs). */
  logs(): string;
}

const READY_TIMEOUT_MS = 60_000;

/**
 * Writes the config into the root, starts the daemon and waits for readiness. The root's
 * cleanup stops it (SIGTERM, then SIGKILL) before the mount/loop sweep.
 */
export async function startTestDaemon(root: TmpRoot, o: TestDaemonOptions = {}): Promise<TestDaemon> {
  const at = (...parts: string[]) => (o.subdir ? root.path(o.subdir, ...parts) : root.path(...parts));
  const stateRoot = at('state');
  const run = at('run');
  mkdirSync(run, { recursive: true });
  const socket = join(run, 'admin.sock');
  // A Docker driver name has one fixed address (docker-drivers.ts): config.docker.socket wins.
  const dockerOverride = (o.config?.['docker'] as { socket?: unknown } | undefined)?.socket;
  const dockerSocket = typeof dockerOverride === 'string' ? dockerOverride : join(run, 'docker.sock');
  const csiEndpoint = join(run, 'csi.sock');
  const configFile = at('config.yaml');
  const logFile = at('daemon.log');
  const config = {
    nodeId: 'test-node',
    stateRoot,
    defaultBackend: o.defaultBackend ?? 'local',
    backends: o.backends ?? { local: { driver: 'dir' }, loop: { driver: 'loop' } },
    log: { level: o.logLevel ?? 'info' },
    admin: { socket },
    docker: { enabled: o.docker ?? false, socket: dockerSocket },
    csi: { enabled: o.csi ?? false, endpoint: csiEndpoint },
    // Targets live under the test's own root (the state root inside it is refused anyway).
    targets: { allowedPrefixes: [root.dir] },
  } as Record<string, unknown>;
  // One level deep, so `config: { docker: { driverName: 'x' } }` keeps the generated socket.
  for (const [k, v] of Object.entries(o.config ?? {})) {
    const cur = config[k];
    const isObj = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
    config[k] = isObj(cur) && isObj(v) && k !== 'backends' ? { ...(cur as object), ...(v as object) } : v;
  }
  writeFileSync(configFile, stringify(config));

  let child: ChildProcess | null = null;
  let exited: Promise<number | null> = Promise.resolve(null);
  const client = createAdminClient({ socket, timeoutMs: 120_000 });

  const d: TestDaemon = {
    root, configFile, stateRoot, socket, dockerSocket, csiEndpoint, logFile, client,
    pid: () => child?.pid ?? null,
    async start() {
      if (child) throw new Error('test daemon already running');
      const fd = openSync(logFile, 'a');
      const env = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('BERTH_')) delete env[k];
      Object.assign(env, o.env);
      const argv = [process.execPath, ...(o.sourceMaps === false ? [] : ['--enable-source-maps']), o.berthJs ?? BERTH_JS, 'serve', '--config', configFile];
      const [bin, ...args] = [...(o.wrap?.() ?? []), ...argv] as [string, ...string[]];
      const c = spawn(bin, args, {
        stdio: ['ignore', fd, fd],
        env,
      });
      closeSync(fd);
      child = c;
      exited = new Promise((res) => c.once('exit', (code, signal) => {
        if (child === c) child = null;
        res(code ?? (signal ? 128 : null));
      }));
      await waitReady(d, c);
    },
    async kill(signal = 'SIGKILL') {
      const c = child;
      if (!c) return;
      c.kill(signal);
      await exited;
    },
    async stop() {
      const c = child;
      if (!c) return null;
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    berth: (args, env = {}) => runBerth(args, { socket, env }),
    logs: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
  };
  root.defer(() => d.stop());
  await d.start();
  return d;
}

async function waitReady(d: TestDaemon, c: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const probe = createAdminClient({ socket: d.socket, timeoutMs: 2_000 });
  for (;;) {
    if (c.exitCode !== null || c.signalCode !== null) {
      throw new Error(`berth daemon exited during start (${c.exitCode ?? c.signalCode}); log:\n${d.logs().slice(-4000)}`);
    }
    try {
      const s = await probe.status();
      if (s.ready) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`berth daemon not ready after ${READY_TIMEOUT_MS} ms; log:\n${d.logs().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs `node dist/berth.js <args>`; BERTH_* variables of the test process are not passed on.
 * @example const r = await runBerth(['status'], { socket }); expect(r.code).toBe(0);
 */
export function runBerth(args: readonly string[], o: { socket?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('BERTH_')) delete env[k];
  Object.assign(env, o.env);
  const argv = [BERTH_JS, ...(o.socket ? ['--socket', o.socket] : []), ...args];
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    c.once('error', rej);
    c.once('close', (code) => res({ code, stdout, stderr }));
  });
}
