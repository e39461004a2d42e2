// Cluster mode beside single node (issue 10): real daemons (dist/berth.js) measured through the
// admin API on their unix sockets, dir backends only (no device, no OS mount: what is measured is
// the catalog and the core around it). Every series runs interleaved, one round after another,
// the order rotated each round, and each ratio is the median of the per-round ratios (a busy
// machine slows a whole round alike); p50/p50 is in the note.
//
// Daemons, all at log level warn, state and etcd data on the same disk (the bench's tmp root):
// - baseline: the embedded daemon built from the last commit before the catalog refactor
//   ("core: one rule set over two catalogs"), built from git by baseline.ts, never committed;
//   BERTH_BENCH_BASELINE=<commit> names another;
// - embedded: this build, single node (SqliteCatalog, the default);
// - nodes a and b: this build in cluster mode (EtcdCatalog) on one real etcd the bench starts
//   (test/helpers/cluster.ts), each with a dir backend local to the node ("local") and a shared
//   one ("shared": true), lease TTL and self-fence deadline at their defaults.
//
// Part 1, 100 rounds: create, inspect, list, mount and unmount (first / second reference),
// remove; baseline, embedded, and node a on both backends. etcd's WAL fsyncs per operation come
// from its /metrics.
// Part 2: 10,000 volumes in each catalog, created through the admin API (32 requests in flight,
// in interleaved chunks of 500); then list (all 10,000: JSON over the admin socket), a label
// filter and inspect on each, node b included: it made none of them, its view came through the
// watch. Goals: list < 1 s, inspect < 5 ms with 10,000 volumes in etcd; single node no worse than
// the baseline. Last, a daemon start with 10,000 volumes.
import { readFileSync, readdirSync } from 'node:fs';
import type { AdminClient } from '../../frontends/admin/client.js';
import { startCluster } from '../helpers/cluster.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createTmpRoot } from '../helpers/tmp-root.js';
import { buildBaseline, type Baseline } from './baseline.js';
import { percentile, summarize, type BenchResult } from './stats.js';

/** The parent of d033bac "core: one rule set over two catalogs". */
const BASELINE = process.env['BERTH_BENCH_BASELINE'] ?? 'c3e69e8';
/**
 * Sizes, for a quick check of the bench itself (the recorded run uses the defaults):
 * BERTH_BENCH_CLUSTER_ROUNDS (part 1), BERTH_BENCH_CLUSTER_VOLUMES and _CHUNK (part 2).
 */
function size(name: string, fallback: number): number {
  const raw = process.env[`BERTH_BENCH_CLUSTER_${name}`];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BERTH_BENCH_CLUSTER_${name}=${raw}: a positive integer, please`);
  return n;
}
const N = size('ROUNDS', 100);
const WARMUP = 2;
const MANY = size('VOLUMES', 10_000);
const CHUNK = size('CHUNK', 500);
if (MANY % CHUNK !== 0) throw new Error(`BERTH_BENCH_CLUSTER_VOLUMES (${MANY}) must be a multiple of BERTH_BENCH_CLUSTER_CHUNK (${CHUNK})`);
const IN_FLIGHT = 32;
const COUNT = MANY.toLocaleString('en-US');
const GROUP_OPS = 'cluster mode: etcd catalog beside SQLite (real daemons, dir, admin API)';
const GROUP_MANY = `cluster mode: ${COUNT} volumes (etcd catalog beside SQLite)`;

interface Target {
  /** Prefix of its volume names (targets sharing a catalog must not share names). */
  readonly key: string;
  readonly label: string;
  readonly client: AdminClient;
  /** The daemon serving it (targets on one cluster node share it). */
  readonly daemon: TestDaemon;
  readonly backend: string;
  readonly etcd: boolean;
  /** The series its ratio is taken against (a key), or none. */
  readonly versus?: string;
}

const median = (xs: readonly number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const nm = (t: Target, i: number) => `${t.key}-${i < 0 ? `w${-i}` : i}`;

/**
 * Runs `op` once per target per round (warm-up rounds first, negative i), the order rotated
 * each round; returns the samples (ms) per target: the op's time, or the number it returns.
 */
async function rounds(targets: readonly Target[], n: number, op: (t: Target, i: number) => Promise<unknown>, warmup = WARMUP): Promise<number[][]> {
  const out = targets.map(() => [] as number[]);
  for (let i = -warmup; i < n; i++) {
    const shift = ((i % targets.length) + targets.length) % targets.length;
    for (let j = 0; j < targets.length; j++) {
      const k = (j + shift) % targets.length;
      const t = targets[k]!;
      const t0 = performance.now();
      let timed: unknown;
      try {
        timed = await op(t, i);
      } catch (err) {
        throw new Error(`${t.label}, round ${i}: ${(err as Error).message}`, { cause: err });
      }
      if (i >= 0) out[k]!.push(typeof timed === 'number' ? timed : performance.now() - t0);
    }
  }
  return out;
}

/** Index of the series `t` is compared with, or -1. */
const versus = (targets: readonly Target[], t: Target) => (t.versus === undefined ? -1 : targets.findIndex((x) => x.key === t.versus));

/** Median of the per-round ratios of series k to series ref. */
const perRound = (samples: number[][], k: number, ref: number) => median(samples[k]!.map((ms, i) => ms / samples[ref]![i]!));

/** One row per target, each with its ratio to its `versus` series (median of per-round ratios). */
function rows(group: string, op: string, targets: readonly Target[], samples: number[][], note: (t: Target) => string | undefined): BenchResult[] {
  return targets.map((t, k) => {
    const r = summarize(group, `${op}: ${t.label}`, samples[k]!);
    const ref = versus(targets, t);
    const extra = note(t);
    if (ref < 0) return extra ? { ...r, note: extra } : r;
    const base = samples[ref]!;
    const p50 = `p50/p50 ${(r.p50Ms! / summarize(group, '', base).p50Ms!).toFixed(2)}`;
    return { ...r, ratio: { reference: `${targets[ref]!.label}, median of per-round ratios`, value: perRound(samples, k, ref) }, note: extra ? `${extra}; ${p50}` : p50 };
  });
}

/**
 * CPU time (ms) a process has used so far, all its threads, from the scheduler's own account
 * (/proc/<pid>/task/<tid>/schedstat, in ns): unlike wall time, hardly moved by other work on a
 * busy machine.
 */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread ended */
    }
  }
  return ns / 1e6;
}

/** CPU ms per operation of each target's daemon over `fn` (`ops` operations per target). */
async function cpuPerOp<T>(targets: readonly Target[], ops: number, fn: () => Promise<T>): Promise<{ result: T; perOp: (t: Target) => number }> {
  const daemons = [...new Set(targets.map((t) => t.daemon))];
  const pid = (d: TestDaemon) => d.pid() ?? NaN;
  const before = daemons.map((d) => cpuMs(pid(d)));
  const result = await fn();
  const used = daemons.map((d, k) => cpuMs(pid(d)) - before[k]!);
  return {
    result,
    perOp: (t) => used[daemons.indexOf(t.daemon)]! / (ops * targets.filter((x) => x.daemon === t.daemon).length),
  };
}

/** "CPU 0.41 ms/op" and, against its `versus` series, the CPU ratio. */
function cpuNote(targets: readonly Target[], perOp: (t: Target) => number, t: Target): string {
  const ref = versus(targets, t);
  const ratio = ref < 0 ? '' : ` (${(perOp(t) / perOp(targets[ref]!)).toFixed(2)}x)`;
  return `daemon CPU ${perOp(t).toFixed(2)} ms/op${ratio}`;
}

/** etcd's WAL fsyncs so far (count, seconds), from its /metrics. */
async function walFsyncs(endpoint: string): Promise<{ count: number; seconds: number }> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const num = (name: string) => {
    const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
    if (!m) throw new Error(`etcd /metrics has no ${name}`);
    return Number(m[1]);
  };
  return { count: num('etcd_disk_wal_fsync_duration_seconds_count'), seconds: num('etcd_disk_wal_fsync_duration_seconds_sum') };
}

/**
 * `n` interleaved rounds of `op` (after the warm-up), one row per target with its daemon's CPU
 * per operation and `note`.
 */
async function measure(
  group: string, op: string, targets: readonly Target[], n: number, run: (t: Target, i: number) => Promise<unknown>,
  note: (t: Target) => string | undefined = () => undefined,
): Promise<BenchResult[]> {
  const { result: samples, perOp } = await cpuPerOp(targets, n + WARMUP, () => rounds(targets, n, run));
  return rows(group, op, targets, samples, (t) => [note(t), cpuNote(targets, perOp, t)].filter(Boolean).join('; '));
}

/** Part 1: every operation, interleaved over the targets, with etcd's WAL fsyncs per operation. */
async function operations(targets: readonly Target[], etcdEndpoint: string): Promise<BenchResult[]> {
  const series: Array<{ op: string; n: number; run: (t: Target, i: number) => Promise<unknown> }> = [
    { op: 'create', n: N, run: (t, i) => t.client.createVolume({ name: nm(t, i), backend: t.backend }) },
    { op: 'inspect', n: 5 * N, run: (t, i) => t.client.inspectVolume(nm(t, Math.abs(i) % N)) },
    { op: `list (${N + WARMUP} volumes)`, n: N, run: (t) => t.client.listVolumes({ backend: t.backend }) },
    { op: 'mount, first reference', n: N, run: (t, i) => t.client.mount(nm(t, i), { consumer: 'bench' }) },
    { op: 'mount, second reference', n: N, run: (t, i) => t.client.mount(nm(t, i), { consumer: 'bench2' }) },
    { op: 'unmount, not last', n: N, run: (t, i) => t.client.unmount(nm(t, i), { consumer: 'bench2' }) },
    { op: 'unmount, last', n: N, run: (t, i) => t.client.unmount(nm(t, i), { consumer: 'bench' }) },
    { op: 'remove', n: N, run: (t, i) => t.client.removeVolume(nm(t, i)) },
  ];
  const etcdTargets = targets.filter((t) => t.etcd).length;
  const out: BenchResult[] = [];
  for (const s of series) {
    const before = await walFsyncs(etcdEndpoint);
    const { result: samples, perOp } = await cpuPerOp(targets, s.n + WARMUP, () => rounds(targets, s.n, s.run));
    const after = await walFsyncs(etcdEndpoint);
    const ops = etcdTargets * (s.n + WARMUP);
    const fsyncs = after.count - before.count;
    const wal = `etcd: ${(fsyncs / ops).toFixed(1)} WAL fsyncs/op${fsyncs / ops >= 0.05 ? `, ${((after.seconds - before.seconds) * 1000 / fsyncs).toFixed(2)} ms each` : ''}`;
    out.push(...rows(GROUP_OPS, s.op, targets, samples, (t) => [cpuNote(targets, perOp, t), ...(t.etcd ? [wal] : [])].join('; ')));
    if (s.op.startsWith('list')) {
      for (const t of targets) {
        const got = (await t.client.listVolumes({ backend: t.backend })).length;
        if (got !== N + WARMUP) throw new Error(`${t.label} lists ${got} volumes, not ${N + WARMUP}`);
      }
    }
  }
  return out;
}

/**
 * Creates MANY volumes on every target, in interleaved chunks of CHUNK creates with IN_FLIGHT
 * requests in flight; returns each chunk's time per target.
 */
async function fill(targets: readonly Target[]): Promise<number[][]> {
  const chunk = async (t: Target, c: number) => {
    let next = c * CHUNK;
    const end = next + CHUNK;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      for (let i = next++; i < end; i = next++) {
        await t.client.createVolume({ name: `bulk-${i}`, backend: t.backend, labels: { shard: String(i % 100) } });
      }
    }));
  };
  return rounds(targets, MANY / CHUNK, chunk, 0);
}

/** "goal met at p50 and p99", or which of them misses it, from the measured row. */
function verdict(r: BenchResult, ms: number): string {
  const p50 = r.p50Ms! < ms;
  const p99 = r.p99Ms! < ms;
  if (p50 && p99) return 'goal met at p50 and p99';
  return p50 ? 'goal met at p50, **not at p99**' : '**goal not met** (p50)';
}

/** Part 2: MANY volumes per catalog; list, filter and inspect on every reader. */
async function many(writers: readonly Target[], readers: readonly Target[]): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const { result: filled, perOp } = await cpuPerOp(writers, MANY, () => fill(writers));
  writers.forEach((t, k) => {
    const ms = filled[k]!.reduce((a, b) => a + b, 0);
    const ref = versus(writers, t);
    out.push({
      group: GROUP_MANY, name: `create x${COUNT} (${IN_FLIGHT} in flight): ${t.label}`, n: MANY, opsPerSec: (MANY * 1000) / ms,
      ...(ref < 0 ? {} : { ratio: { reference: `${writers[ref]!.label} (time), median of per-chunk ratios`, value: perRound(filled, k, ref) } }),
      note: `throughput, not latency; chunks of ${CHUNK} interleaved; ${cpuNote(writers, perOp, t)}`,
    });
  });
  for (const t of readers) {
    const n = (await t.client.listVolumes()).length;
    if (n !== MANY) throw new Error(`${t.label} lists ${n} volumes, not ${MANY}`);
  }
  const watched = (t: Target) => (t.key === 'b' ? 'node b made none of them: its view came through the watch' : undefined);
  const goal = (ms: number) => (t: Target) => [watched(t), t.etcd ? `goal < ${ms} ms` : undefined].filter(Boolean).join('; ');
  const checked = (rs: BenchResult[], ms: number) => rs.map((r) => (r.note?.includes('goal <') ? { ...r, note: `${verdict(r, ms)}; ${r.note}` } : r));
  out.push(...checked(await measure(GROUP_MANY, `list (all ${COUNT}, JSON over the admin socket)`, readers, 20, (t) => t.client.listVolumes(), goal(1_000)), 1_000));
  out.push(...(await measure(GROUP_MANY, `list (label filter, ${MANY / 100} match)`, readers, 100,
    (t, i) => t.client.listVolumes({ labels: { shard: String(Math.abs(i) % 100) } }), watched)));
  out.push(...checked(await measure(GROUP_MANY, 'inspect by name', readers, 1000,
    (t, i) => t.client.inspectVolume(`bulk-${Math.abs(i * 7919) % MANY}`), goal(5)), 5));
  return out;
}

/**
 * A start with MANY volumes: spawn to the admin API answering ready (polled every 50 ms), and
 * the CPU the new daemon used until then.
 */
async function restarts(targets: readonly Target[]): Promise<BenchResult[]> {
  const cpu = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const samples = await rounds(targets, 5, async (t) => {
    await t.daemon.stop();
    const t0 = performance.now();
    await t.daemon.start();
    const ms = performance.now() - t0;
    cpu.get(t)!.push(cpuMs(t.daemon.pid()!));
    return ms;
  }, 0);
  const perStart = (t: Target) => median(cpu.get(t)!);
  return rows(GROUP_MANY, 'daemon start to ready', targets, samples,
    (t) => `after a SIGTERM stop (not timed), the start-up reconcile over ${COUNT} volumes included; ${cpuNote(targets, perStart, t).replace('ms/op', 'ms (median)')}`);
}

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-cluster');
  try {
    const base: Baseline = await buildBaseline(root, BASELINE);
    process.stderr.write(`bench: baseline ${base.commit.slice(0, 12)} "${base.subject}"\n`);
    const quiet = { logLevel: 'warn' as const, sourceMaps: false };
    const baseline = await startTestDaemon(root, { ...quiet, subdir: 'baseline', berthJs: base.berthJs });
    const embedded = await startTestDaemon(root, { ...quiet, subdir: 'embedded' });
    const cluster = await startCluster(root, { nodes: ['a', 'b'], leaseTtlMs: 10_000, selfFenceMs: 6_000, daemon: () => quiet });
    const [a, b] = [cluster.node('a'), cluster.node('b')];
    const baseLabel = `embedded, before the catalog (${base.commit.slice(0, 7)})`;
    const T = {
      baseline: { key: 'base', label: baseLabel, daemon: baseline, client: baseline.client, backend: 'local', etcd: false },
      embedded: { key: 'emb', label: 'embedded (SQLite)', daemon: embedded, client: embedded.client, backend: 'local', etcd: false, versus: 'base' },
      local: { key: 'loc', label: 'etcd, node-local dir', daemon: a, client: a.client, backend: 'local', etcd: true, versus: 'emb' },
      shared: { key: 'sh', label: 'etcd, shared dir', daemon: a, client: a.client, backend: 'shared', etcd: true, versus: 'emb' },
    } satisfies Record<string, Target>;
    const out = await operations([T.baseline, T.embedded, T.local, T.shared], cluster.etcd.endpoint);

    const many10k = {
      baseline: T.baseline,
      embedded: T.embedded,
      a: { key: 'a', label: 'etcd, node a (made them; shared dir)', daemon: a, client: a.client, backend: 'shared', etcd: true, versus: 'emb' },
      b: { key: 'b', label: 'etcd, node b', daemon: b, client: b.client, backend: 'shared', etcd: true, versus: 'emb' },
    } satisfies Record<string, Target>;
    out.push(...(await many([many10k.baseline, many10k.embedded, many10k.a], [many10k.baseline, many10k.embedded, many10k.b, many10k.a])));
    out.push(...(await restarts([many10k.baseline, many10k.embedded, many10k.b])));
    return out;
  } finally {
    await root.cleanup();
  }
}
