// Cold starts of the executables that run once per call, as their callers run them, next to a
// bare `node -e 0`:
// - the FlexVolume driver installed by `berth flexvolume install` (kubelet execs it; its #! is
//   node's absolute path): init, and real calls that reach the daemon (isattached, a bind
//   mount into a pod directory and its unmount);
// - dvdcli (Mesos execs it; #!/usr/bin/env node): version, path, mount and unmount through
//   the Docker plugin socket;
// - the `berth` client commands, as install.sh's launcher runs them (node dist/berth.js).
// Every process, the reference included, gets the same clean environment (PATH only), as
// Mesos and kubelet give their executables: an inherited NODE_EXTRA_CA_CERTS alone adds ~40 ms
// to every node start and once inflated the reference. The series run interleaved, one round
// after another, and each ratio is the median of the per-round ratios to the reference (a
// busy machine slows a whole round alike); p50/p50 is in the note. Goals: <= 1.3x for the
// per-call executables, <= 2x for the berth client commands.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execFile, goJson, kubeletCall } from '../helpers/callers.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { BERTH_JS, REPO_ROOT, runBerth, startTestDaemon } from '../helpers/daemon.js';
import { createTmpRoot } from '../helpers/tmp-root.js';
import { percentile, summarize, type BenchResult } from './stats.js';

const GROUP_EXEC = 'exec (per-call executables, cold start)';
const GROUP_CLI = 'berth CLI (client commands, cold start)';
const N = 40;
const WARMUP = 3;
const REFERENCE = 'node -e 0';

/** What Mesos and kubelet pass: a PATH and nothing else (node's own directory first, for #!/usr/bin/env node). */
export function cleanEnv(): Record<string, string> {
  return { PATH: [dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':') };
}

interface Series {
  readonly group: string;
  readonly name: string;
  readonly note?: string;
  /** Runs the call once; throws unless it did what it should. */
  readonly run: () => Promise<unknown>;
}

const median = (xs: readonly number[]) => percentile([...xs].sort((a, b) => a - b), 50);

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-exec');
  try {
    // A driver name with its one spec file and socket (test/helpers/docker-drivers.ts); its
    // release runs last, after the daemon stopped.
    const held = await acquireDriver('benchExec');
    root.defer(held.release);
    const driver = held.driver;
    const d = await startTestDaemon(root, { sourceMaps: false, config: { docker: { enabled: true, driverName: driver, socket: held.socket } } });
    await held.announce();
    root.defer(() => rmSync(held.spec!, { force: true }));
    const pluginDir = root.path('exec');
    const installed = await runBerth(['--socket', d.socket, 'flexvolume', 'install', '--plugin-dir', pluginDir]);
    if (installed.code !== 0) throw new Error(`flexvolume install failed: ${installed.stderr}`);
    const flex = join(pluginDir, 'berth~berth', 'berth');
    const dvdcli = join(REPO_ROOT, 'dist', 'dvdcli.cjs');
    await d.client.createVolume({ name: 'bench-exec' });
    await d.client.mount('bench-exec', { consumer: 'bench' });
    await d.client.createVolume({ name: 'bench-dvd' });
    const J = goJson({ 'kubernetes.io/fsType': '', 'kubernetes.io/pvOrVolumeName': 'bench-exec', 'kubernetes.io/readwrite': 'rw' });
    const podDir = root.path('kubelet', 'pods', 'bench-pod', 'volumes', 'berth~berth', 'bench-exec');
    mkdirSync(podDir, { recursive: true });
    const env = cleanEnv();

    const ok = async (p: Promise<{ code: number | null; stderr: string }>) => {
      const r = await p;
      if (r.code !== 0) throw new Error(`exited ${r.code}: ${r.stderr}`);
      return r;
    };
    const flexOk = async (args: string[]) => {
      const r = await kubeletCall(flex, args, env);
      if (r.code !== 0 || r.reply.status !== 'Success') throw new Error(`flexvolume ${args[0]}: ${r.combined}`);
    };
    const dvd = (args: string[]) => ok(execFile(dvdcli, args, env));
    const berth = (args: string[]) => ok(execFile(process.execPath, [BERTH_JS, '--socket', d.socket, ...args], env));
    const dvdArgs = (volume: string) => [`--volumedriver=${driver}`, `--volumename=${volume}`];

    const series: Series[] = [
      { group: GROUP_EXEC, name: REFERENCE, run: () => ok(execFile(process.execPath, ['-e', '0'], env)) },
      { group: GROUP_EXEC, name: 'flexvolume init', note: 'no daemon call', run: () => flexOk(['init']) },
      { group: GROUP_EXEC, name: 'flexvolume isattached', note: 'one admin API call', run: () => flexOk(['isattached', J, 'test-node']) },
      { group: GROUP_EXEC, name: 'flexvolume mount', note: 'one mount call (the daemon checks the fsType): a bind mount into the pod directory', run: () => (mkdirSync(podDir, { recursive: true }), flexOk(['mount', podDir, J])) },
      { group: GROUP_EXEC, name: 'flexvolume unmount', note: 'list + unmount: the bind mount goes', run: () => flexOk(['unmount', podDir]) },
      { group: GROUP_EXEC, name: 'dvdcli version', note: 'via #!/usr/bin/env node', run: () => dvd(['version']) },
      { group: GROUP_EXEC, name: 'dvdcli path', note: 'Activate + Get over the plugin socket', run: () => dvd(['path', ...dvdArgs('bench-exec')]) },
      { group: GROUP_EXEC, name: 'dvdcli mount', note: 'Activate + Get + Mount', run: () => dvd(['mount', ...dvdArgs('bench-dvd')]) },
      { group: GROUP_EXEC, name: 'dvdcli unmount', note: 'Activate + Get + Unmount', run: () => dvd(['unmount', ...dvdArgs('bench-dvd')]) },
      { group: GROUP_CLI, name: 'berth version', note: 'client + daemon version (one call)', run: () => berth(['version']) },
      { group: GROUP_CLI, name: 'berth status', note: 'table', run: () => berth(['status']) },
      { group: GROUP_CLI, name: 'berth volume ls', note: 'table, 2 volumes', run: () => berth(['volume', 'ls']) },
      { group: GROUP_CLI, name: 'berth volume ls --output json', run: () => berth(['volume', 'ls', '--output', 'json']) },
      { group: GROUP_CLI, name: 'berth volume inspect', note: 'table', run: () => berth(['volume', 'inspect', 'bench-exec']) },
    ];
    const samples = series.map(() => [] as number[]);
    for (let i = -WARMUP; i < N; i++) {
      for (const [k, s] of series.entries()) {
        const t0 = performance.now();
        try {
          await s.run();
        } catch (err) {
          throw new Error(`${s.name}: ${(err as Error).message}`);
        }
        if (i >= 0) samples[k]!.push(performance.now() - t0);
      }
    }
    const base = samples[0]!;
    const baseP50 = median(base);
    const results: BenchResult[] = [];
    for (const group of [GROUP_EXEC, GROUP_CLI]) {
      results.push(summarize(group, REFERENCE, base, group === GROUP_EXEC ? {} : { note: 'the same samples as above' }));
      for (const [k, s] of series.entries()) {
        if (k === 0 || s.group !== group) continue;
        const perRound = median(samples[k]!.map((ms, i) => ms / base[i]!));
        const r = summarize(group, s.name, samples[k]!);
        const p50Ratio = `p50/p50 ${(r.p50Ms! / baseP50).toFixed(2)}`;
        results.push({ ...r, ratio: { reference: `${REFERENCE}, median of per-round ratios`, value: perRound }, note: s.note ? `${s.note}; ${p50Ratio}` : p50Ratio });
      }
    }
    return results;
  } finally {
    await root.cleanup();
  }
}
