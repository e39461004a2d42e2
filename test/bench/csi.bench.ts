/**
 * CSI lifecycle latency against a real daemon (dist/berth.js) over its unix socket:
 * CreateVolume -> NodeStage -> NodePublish -> NodeUnpublish -> NodeUnstage -> DeleteVolume,
 * sequential, for dir and loop (ext4, 64 MiB), plus each step on its own; and a burst of
 * 100 NodePublish calls at once on 100 staged dir volumes (total time and per-call p99).
 *
 * Reference: the Go csi-driver-host-path doing the same cycle. It is not part of the project
 * (never committed or built by it); to compare in the same run, build it by hand, start it
 * and point the bench at its socket:
 *   hostpathplugin --endpoint unix:///tmp/hp/csi.sock --nodeid bench --statedir /tmp/hp/state &
 *   BERTH_BENCH_HOSTPATH_ENDPOINT=/tmp/hp/csi.sock npm run bench -- csi
 * Its cycles are then interleaved with berth's dir cycles round by round (a load spike on a
 * shared machine hits both), and the dir ratio is the median of the per-round ratios.
 * Without it the ratio is against the ~27 ms p50 measured on these machines (issue 4).
 * The daemon runs as installed (no --enable-source-maps), after WARMUP cycles.
 *
 * The client: the lean one (csi-lean-client.ts: node:http2 and framing), as kubelet's grpc-go
 * costs per call; the dir comparison is also run, interleaved in the same rounds, with
 * grpc-js's client, whose own ~0.3-0.5 ms per call is reported as its own row.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { percentile, summarize, type BenchResult } from './stats.js';
import { createCsiClient, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { createLeanCsiClient } from '../helpers/csi-lean-client.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { createTmpRoot, type TmpRoot } from '../helpers/tmp-root.js';

const GROUP = 'csi (full volume lifecycle over gRPC, real daemon)';
const HOSTPATH_P50_MS = 27;
const N = 50;
/**
 * Cycles run before measuring, on each side: the bench measures a running daemon, as kubelet
 * meets it, not the first calls after its start, while V8 is still compiling its hot paths
 * (a fresh daemon's first cycles are ~10% slower; host-path's Go code needs no warm-up). Runs
 * up to 2026-12-05 17:39 warmed up 3 cycles.
 */
const WARMUP = 30;
/** Names differ per run: an external driver keeps its volumes from an earlier, interrupted run. */
const RUN = randomBytes(3).toString('hex');
const STEPS = ['CreateVolume', 'NodeStageVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'NodeUnstageVolume', 'DeleteVolume'] as const;

type Samples = Record<(typeof STEPS)[number] | 'cycle', number[]>;
const newSamples = () => Object.fromEntries([...STEPS, 'cycle'].map((k) => [k, [] as number[]])) as unknown as Samples;

/** One lifecycle; `parameters` go to CreateVolume (berth: the backend; host-path: none). */
async function cycle(c: CsiClient, root: TmpRoot, label: string, parameters: Record<string, string>, i: number, out: Samples | null): Promise<void> {
  const name = `bench-${label}-${RUN}-${i < 0 ? `w${-i}` : i}`;
  const cap = mountCap();
  const staging = root.path('kubelet', label, 'staging', name);
  const target = root.path('kubelet', label, 'pods', name, 'mount');
  // As kubelet does before the calls (CSI: the CO makes the staging path and the target's parent).
  mkdirSync(staging, { recursive: true });
  mkdirSync(dirname(target), { recursive: true });
  let volumeId = '';
  const calls: Record<(typeof STEPS)[number], () => Promise<unknown>> = {
    CreateVolume: async () => {
      const r = await c.controller('CreateVolume', {
        name, capacity_range: { required_bytes: String(64 * 2 ** 20) }, volume_capabilities: [cap], parameters,
      });
      volumeId = r.volume.volume_id;
    },
    NodeStageVolume: () => c.node('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: cap }),
    NodePublishVolume: () => c.node('NodePublishVolume', {
      volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: cap,
    }),
    NodeUnpublishVolume: () => c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: target }),
    NodeUnstageVolume: () => c.node('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging }),
    DeleteVolume: () => c.controller('DeleteVolume', { volume_id: volumeId }),
  };
  const start = performance.now();
  for (const step of STEPS) {
    const t0 = performance.now();
    await calls[step]();
    out?.[step].push(performance.now() - t0);
  }
  out?.cycle.push(performance.now() - start);
}

const CONCURRENT = 100;

/**
 * `CONCURRENT` dir volumes created and staged one by one, then every NodePublish sent at once
 * (a node starting 100 pods): the total wall time and each call's latency. Unpublish, unstage
 * and delete follow, untimed. `parameters` as for cycle().
 */
async function concurrentPublish(c: CsiClient, root: TmpRoot, label: string, parameters: Record<string, string>): Promise<{ totalMs: number; latencies: number[] }> {
  const cap = mountCap();
  const vols: Array<{ id: string; staging: string; target: string }> = [];
  for (let i = 0; i < CONCURRENT; i++) {
    const name = `bench-par-${label}-${RUN}-${i}`;
    const staging = root.path('kubelet', label, 'par-staging', name);
    const target = root.path('kubelet', label, 'par-pods', name, 'mount');
    mkdirSync(staging, { recursive: true });
    mkdirSync(dirname(target), { recursive: true });
    const r = await c.controller('CreateVolume', { name, capacity_range: { required_bytes: String(2 ** 20) }, volume_capabilities: [cap], parameters });
    const id: string = r.volume.volume_id;
    await c.node('NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
    vols.push({ id, staging, target });
  }
  const start = performance.now();
  const latencies = await Promise.all(vols.map(async (v) => {
    const t0 = performance.now();
    await c.node('NodePublishVolume', { volume_id: v.id, staging_target_path: v.staging, target_path: v.target, volume_capability: cap });
    return performance.now() - t0;
  }));
  const totalMs = performance.now() - start;
  await Promise.all(vols.map((v) => c.node('NodeUnpublishVolume', { volume_id: v.id, target_path: v.target })));
  for (const v of vols) {
    await c.node('NodeUnstageVolume', { volume_id: v.id, staging_target_path: v.staging });
    await c.controller('DeleteVolume', { volume_id: v.id });
  }
  return { totalMs, latencies };
}

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-csi');
  try {
    const d = await startTestDaemon(root, { csi: true, logLevel: 'info', sourceMaps: false });
    const c = createLeanCsiClient(d.csiEndpoint);
    const cg = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());
    root.defer(() => cg.close());
    const hpEndpoint = process.env.BERTH_BENCH_HOSTPATH_ENDPOINT;
    const hp = hpEndpoint ? createLeanCsiClient(hpEndpoint) : null;
    const hpg = hpEndpoint ? createCsiClient(hpEndpoint) : null;
    if (hp) root.defer(() => hp.close());
    if (hpg) root.defer(() => hpg.close());
    const results: BenchResult[] = [];

    // dir, interleaved with the host-path driver when one is given; each round once with the
    // lean client and once with grpc-js's.
    const round = async (i: number, out: { dir: Samples; ref: Samples; dirG: Samples; refG: Samples } | null) => {
      await cycle(c, root, 'dir', { backend: 'local' }, i, out?.dir ?? null);
      if (hp) await cycle(hp, root, 'hostpath', {}, i, out?.ref ?? null);
      await cycle(cg, root, 'dir-grpcjs', { backend: 'local' }, i, out?.dirG ?? null);
      if (hpg) await cycle(hpg, root, 'hostpath-grpcjs', {}, i, out?.refG ?? null);
    };
    for (let w = 1; w <= WARMUP; w++) await round(-w, null);
    const s = { dir: newSamples(), ref: newSamples(), dirG: newSamples(), refG: newSamples() };
    for (let i = 0; i < N; i++) await round(i, s);
    const { dir, ref } = s;
    const whole = summarize(GROUP, 'dir: whole cycle', dir.cycle);
    const note = 'no mount at stage (nothing to stage), one bind mount at publish';
    const pairedMedian = (a: number[], b: number[]) => percentile(a.map((ms, i) => ms / b[i]!).sort((x, y) => x - y), 50);
    if (hp) {
      const hpWhole = summarize(GROUP, 'csi-driver-host-path (Go, same run): whole cycle', ref.cycle);
      results.push({
        ...whole,
        ratio: { reference: 'csi-driver-host-path, same run', value: pairedMedian(dir.cycle, ref.cycle) },
        note: `${note}; p50/p50 ${(whole.p50Ms! / hpWhole.p50Ms!).toFixed(2)}, p99/p99 ${(whole.p99Ms! / hpWhole.p99Ms!).toFixed(2)}`,
      });
      for (const step of STEPS) results.push(summarize(GROUP, `dir: ${step}`, dir[step]));
      results.push(hpWhole);
      for (const step of STEPS) results.push(summarize(GROUP, `csi-driver-host-path: ${step}`, ref[step]));
      const wholeG = summarize(GROUP, 'dir, grpc-js client: whole cycle', s.dirG.cycle);
      const hpWholeG = summarize(GROUP, 'csi-driver-host-path, grpc-js client: whole cycle', s.refG.cycle);
      results.push({
        ...wholeG,
        ratio: { reference: 'csi-driver-host-path, grpc-js client, same rounds', value: pairedMedian(s.dirG.cycle, s.refG.cycle) },
        note: `the same cycle through grpc-js's client; p50/p50 ${(wholeG.p50Ms! / hpWholeG.p50Ms!).toFixed(2)}, p99/p99 ${(wholeG.p99Ms! / hpWholeG.p99Ms!).toFixed(2)}; the client's own cost per call: ${((wholeG.p50Ms! - whole.p50Ms!) / STEPS.length).toFixed(2)} ms (berth), ${((hpWholeG.p50Ms! - hpWhole.p50Ms!) / STEPS.length).toFixed(2)} ms (host-path)`,
      });
      results.push(hpWholeG);
    } else {
      results.push({ ...whole, ratio: { reference: `csi-driver-host-path ~${HOSTPATH_P50_MS} ms p50`, value: whole.p50Ms! / HOSTPATH_P50_MS }, note });
      for (const step of STEPS) results.push(summarize(GROUP, `dir: ${step}`, dir[step]));
      const wholeG = summarize(GROUP, 'dir, grpc-js client: whole cycle', s.dirG.cycle);
      results.push({ ...wholeG, note: `the same cycle through grpc-js's client: ${((wholeG.p50Ms! - whole.p50Ms!) / STEPS.length).toFixed(2)} ms more per call` });
    }

    // A burst: every NodePublish at once on volumes already staged (berth first, then host-path).
    const par = await concurrentPublish(c, root, 'dir', { backend: 'local' });
    const parName = `dir: ${CONCURRENT} concurrent NodePublishVolume (${CONCURRENT} volumes)`;
    const parNote = (p: { totalMs: number }) => `all ${CONCURRENT} done in ${p.totalMs.toFixed(1)} ms; ops/s = ${CONCURRENT} / that`;
    const parResult = (name: string, p: { totalMs: number; latencies: number[] }): BenchResult => ({
      ...summarize(GROUP, name, p.latencies), opsPerSec: (CONCURRENT * 1000) / p.totalMs, note: parNote(p),
    });
    if (hp) {
      const hpPar = await concurrentPublish(hp, root, 'hostpath', {});
      results.push({ ...parResult(parName, par), ratio: { reference: 'csi-driver-host-path total, same run', value: par.totalMs / hpPar.totalMs } });
      results.push(parResult(`csi-driver-host-path: ${CONCURRENT} concurrent NodePublishVolume`, hpPar));
    } else {
      results.push(parResult(parName, par));
    }

    const label = 'loop ext4 64MiB';
    for (let w = 1; w <= WARMUP; w++) await cycle(c, root, 'loop', { backend: 'loop' }, -w, null);
    const loop = newSamples();
    for (let i = 0; i < N; i++) await cycle(c, root, 'loop', { backend: 'loop' }, i, loop);
    results.push({ ...summarize(GROUP, `${label}: whole cycle`, loop.cycle), note: 'losetup + mkfs.ext4 + mount at stage' });
    for (const step of STEPS) results.push(summarize(GROUP, `${label}: ${step}`, loop[step]));
    return results;
  } finally {
    await root.cleanup();
  }
}
