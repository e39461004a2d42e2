/**
 * CSI lifecycle latency against a real daemon (dist/berth.js) over its unix socket:
 * CreateVolume -> NodeStage -> NodePublish -> NodeUnpublish -> NodeUnstage -> DeleteVolume,
 * sequential, for dir and loop (ext4, 64 MiB), plus each step on its own. The reference is
 * the Go csi-driver-host-path cycle on these machines (~27 ms p50, issue 4).
 */
import { summarize, type BenchResult } from './stats.js';
import { createCsiClient, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { createTmpRoot, type TmpRoot } from '../helpers/tmp-root.js';

const GROUP = 'csi (full volume lifecycle over gRPC, real daemon)';
const HOSTPATH_P50_MS = 27;
const N = 50;
const WARMUP = 3;
const STEPS = ['CreateVolume', 'NodeStageVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'NodeUnstageVolume', 'DeleteVolume'] as const;

type Samples = Record<(typeof STEPS)[number] | 'cycle', number[]>;

async function cycle(c: CsiClient, root: TmpRoot, backend: string, i: number, out: Samples | null): Promise<void> {
  const name = `bench-${backend}-${i < 0 ? `w${-i}` : i}`;
  const cap = mountCap();
  const staging = root.path('kubelet', 'staging', name);
  const target = root.path('kubelet', 'pods', name, 'mount');
  let volumeId = '';
  const calls: Record<(typeof STEPS)[number], () => Promise<unknown>> = {
    CreateVolume: async () => {
      const r = await c.controller('CreateVolume', {
        name, capacity_range: { required_bytes: String(64 * 2 ** 20) }, volume_capabilities: [cap], parameters: { backend },
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

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-csi');
  try {
    const d = await startTestDaemon(root, { csi: true, logLevel: 'info' });
    const c = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());
    const results: BenchResult[] = [];
    for (const backend of ['local', 'loop']) {
      const label = backend === 'local' ? 'dir' : 'loop ext4 64MiB';
      for (let w = 1; w <= WARMUP; w++) await cycle(c, root, backend, -w, null);
      const s = Object.fromEntries([...STEPS, 'cycle'].map((k) => [k, [] as number[]])) as unknown as Samples;
      for (let i = 0; i < N; i++) await cycle(c, root, backend, i, s);
      const whole = summarize(GROUP, `${label}: whole cycle`, s.cycle);
      results.push({
        ...whole,
        ratio: { reference: 'csi-driver-host-path ~27 ms p50', value: whole.p50Ms! / HOSTPATH_P50_MS },
        note: backend === 'local' ? 'no mount at stage (nothing to stage), one bind mount at publish' : 'losetup + mkfs.ext4 + mount at stage',
      });
      for (const step of STEPS) results.push(summarize(GROUP, `${label}: ${step}`, s[step]));
    }
    return results;
  } finally {
    await root.cleanup();
  }
}
