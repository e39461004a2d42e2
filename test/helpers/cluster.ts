/**
 * Several berth nodes on this machine for cluster tests: one real etcd (test/helpers/etcd.ts),
 * and per node a real daemon with its own state root, sockets, node id and, optionally, its
 * own mount namespace (a holder process made by `unshare -m`; the daemon joins it with
 * nsenter, so a killed daemon's mounts stay, as a real node's do). All nodes share one
 * "shared storage" directory, which each node reaches through its own bind mount of it (the
 * same storage at a node's own path: loop devices are machine-wide here, and their backing
 * file path is how a loop backend tells its own from another node's).
 *
 *   const c = await startCluster(root, { nodes: ['a', 'b', 'c'] });
 *   await c.node('a').client.createVolume({ name: 'pg', backend: 'shared' });
 *   await c.node('b').client.listVolumes();
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { startEtcd, type TestEtcd } from './etcd.js';
import { startTestDaemon, type TestDaemon, type TestDaemonOptions } from './daemon.js';
import type { TmpRoot } from './tmp-root.js';

export interface ClusterOptions {
  readonly nodes: readonly string[];
  /**
   * Give each node its own mount namespace (issue 11 tests; Docker-free tests can share the
   * host's), or only the nodes this says (a node that serves the test dockerd stays in the
   * host's namespace, where dockerd finds its mounts).
   */
  readonly namespaces?: boolean | ((node: string) => boolean);
  /** Whether the daemons run a fence agent (cluster.fenceAgent; default true). */
  readonly fenceAgent?: boolean;
  /** Lease TTL and self-fence deadline (defaults short, for tests). */
  readonly leaseTtlMs?: number;
  readonly selfFenceMs?: number;
  /** Per node: extra daemon options (backends are generated: local dir, shared dir, shared loop). */
  readonly daemon?: (node: string) => Partial<TestDaemonOptions>;
  /** An etcd endpoint per node instead of the etcd's own (e.g. through a TCP proxy). */
  readonly endpoint?: (node: string, etcd: TestEtcd) => string | Promise<string>;
}

export interface TestNode extends TestDaemon {
  readonly id: string;
  /** The node's view of the shared storage. */
  readonly sharedRoot: string;
  /** Pid of the process holding the node's mount namespace (null: the host's). */
  readonly nsPid: number | null;
  /** Runs a command in the node's mount namespace. */
  run(cmd: readonly string[]): string;
  /** A process whose /proc/<pid>/mountinfo is the node's mount table (the holder, or this process). */
  readonly mountTablePid: number;
  /** Pid of the node's fence agent (from its pid file), null when none runs. */
  agentPid(): number | null;
  /** Kills the node's fence agent(s), also one still starting (no pid file yet). */
  killAgent(): void;
}

export interface TestCluster {
  readonly etcd: TestEtcd;
  readonly nodes: readonly TestNode[];
  node(id: string): TestNode;
  /** The shared storage as the host sees it. */
  readonly shared: string;
}

/** Backends every cluster node gets: a local dir, a shared dir and a shared loop instance. */
export function clusterBackends(sharedRoot: string): Record<string, Record<string, unknown>> {
  return {
    local: { driver: 'dir' },
    shared: { driver: 'dir', shared: true, root: `${sharedRoot}/dir` },
    sloop: { driver: 'loop', shared: true, root: `${sharedRoot}/loop` },
  };
}

export async function startCluster(root: TmpRoot, o: ClusterOptions): Promise<TestCluster> {
  const etcd = await startEtcd(root);
  const shared = root.path('shared');
  mkdirSync(`${shared}/dir`, { recursive: true });
  mkdirSync(`${shared}/loop`, { recursive: true });
  const nodes: TestNode[] = [];
  for (const id of o.nodes) {
    const view = root.path('views', id);
    mkdirSync(view, { recursive: true });
    execFileSync('mount', ['--bind', shared, view]);
    root.defer(() => execFileSync('umount', ['-l', view], { stdio: 'ignore' }));
    let holder: ChildProcess | null = null;
    if (typeof o.namespaces === 'function' ? o.namespaces(id) : o.namespaces) {
      // A process that only holds the namespace: it outlives the daemon, like the host does.
      holder = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
      const h = holder;
      root.defer(() => {
        h.kill('SIGKILL');
      });
      await waitForNamespace(h.pid!);
    }
    const nsPid = holder?.pid ?? null;
    const extra = o.daemon?.(id) ?? {};
    // The daemon starts the node's fence agent as a process of its own (it outlives the
    // daemon on purpose): stopped here, after the daemon (cleanup runs last-in first-out).
    const agentPid = root.path(`node-${id}`, 'state', 'fence-agent.pid');
    root.defer(() => killFromPidFile(agentPid));
    const d = await startTestDaemon(root, {
      subdir: `node-${id}`,
      backends: clusterBackends(view),
      logLevel: 'debug',
      ...extra,
      ...(nsPid ? { wrap: () => ['nsenter', '-t', String(nsPid), '-m', '--'] } : {}),
      config: {
        nodeId: id,
        cluster: {
          etcd: { endpoints: [(await o.endpoint?.(id, etcd)) ?? etcd.endpoint], timeoutMs: 2_000 },
          leaseTtlMs: o.leaseTtlMs ?? 4_000,
          selfFenceMs: o.selfFenceMs ?? 2_000,
          ...(o.fenceAgent === undefined ? {} : { fenceAgent: o.fenceAgent }),
        },
        ...(extra.config ?? {}),
      },
    });
    nodes.push(Object.assign(d, {
      id,
      sharedRoot: view,
      nsPid,
      mountTablePid: nsPid ?? process.pid,
      agentPid: () => agentPidOf(agentPid),
      killAgent: () => killFromPidFile(agentPid),
      run: (cmd: readonly string[]) => execFileSync(nsPid ? 'nsenter' : cmd[0]!, nsPid ? ['-t', String(nsPid), '-m', '--', ...cmd] : cmd.slice(1), { encoding: 'utf8' }),
    }));
  }
  return {
    etcd,
    nodes,
    shared,
    node: (id) => {
      const n = nodes.find((x) => x.id === id);
      if (!n) throw new Error(`no test node ${id}`);
      return n;
    },
  };
}

/** The pid a fence agent's pid file names, if that process still runs and is a berth fence agent. */
function agentPidOf(file: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('fence-agent') ? pid : null;
  } catch {
    return null; // gone already
  }
}

/**
 * Kills (SIGKILL) the fence agent of the state root whose pid file this is: the one the file
 * names, and any other `berth fence-agent --state-root <that root>` (one still starting has
 * not written its pid file yet, and would wait for a gone etcd forever).
 */
export function killFromPidFile(file: string): void {
  const stateRoot = dirname(file);
  const pids = new Set<number>();
  const named = agentPidOf(file);
  if (named !== null) pids.add(named);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('--state-root');
      if (argv.includes('fence-agent') && i >= 0 && argv[i + 1] === stateRoot) pids.add(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Waits until `pid` lives in a mount namespace of its own (unshare has run). */
async function waitForNamespace(pid: number): Promise<void> {
  const { readlinkSync } = await import('node:fs');
  const mine = readlinkSync('/proc/self/ns/mnt');
  for (let i = 0; i < 200; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/mnt`) !== mine && readlinkSync(`/proc/${pid}/exe`).endsWith('sleep')) return;
    } catch {
      /* not there yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${pid} did not enter a mount namespace of its own`);
}
