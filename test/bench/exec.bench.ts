// Cold start of the per-call executables, as their callers run them: the FlexVolume driver
// installed by `berth flexvolume install` (kubelet execs it; #! is node's absolute path) and
// dvdcli (Mesos execs it; #!/usr/bin/env node), next to a bare `node -e 0` measured in the
// same run, interleaved so that machine noise hits every series alike. Goal: within 1.5x.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { callerEnv, execFile, goJson, kubeletCall } from '../helpers/callers.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { REPO_ROOT, runBerth, startTestDaemon } from '../helpers/daemon.js';
import { createTmpRoot } from '../helpers/tmp-root.js';
import { summarize, type BenchResult } from './stats.js';

const GROUP = 'exec (per-call executables, cold start)';
const N = 40;
const WARMUP = 3;

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-exec');
  try {
    // A driver name with its one spec file and socket (test/helpers/docker-drivers.ts); its
    // release runs last, after the daemon stopped.
    const held = await acquireDriver('benchExec');
    root.defer(held.release);
    const driver = held.driver;
    const d = await startTestDaemon(root, { config: { docker: { enabled: true, driverName: driver, socket: held.socket } } });
    await held.announce();
    root.defer(() => rmSync(held.spec!, { force: true }));
    const pluginDir = root.path('exec');
    const installed = await runBerth(['--socket', d.socket, 'flexvolume', 'install', '--plugin-dir', pluginDir]);
    if (installed.code !== 0) throw new Error(`flexvolume install failed: ${installed.stderr}`);
    const flex = join(pluginDir, 'berth~berth', 'berth');
    const dvdcli = join(REPO_ROOT, 'dist', 'dvdcli.cjs');
    await d.client.createVolume({ name: 'bench-exec' });
    await d.client.mount('bench-exec', { consumer: 'bench' });
    const J = goJson({ 'kubernetes.io/fsType': '', 'kubernetes.io/pvOrVolumeName': 'bench-exec', 'kubernetes.io/readwrite': 'rw' });
    const env = callerEnv();

    const series: Array<{ name: string; run: () => Promise<unknown>; note?: string }> = [
      { name: 'node -e 0', run: () => execFile(process.execPath, ['-e', '0'], env) },
      { name: 'flexvolume init', run: () => kubeletCall(flex, ['init'], env), note: 'no daemon call' },
      { name: 'flexvolume isattached', run: () => kubeletCall(flex, ['isattached', J, 'test-node'], env), note: 'one admin API call' },
      { name: 'dvdcli version', run: () => execFile(dvdcli, ['version'], env), note: 'via #!/usr/bin/env node' },
      { name: 'dvdcli path', run: () => execFile(dvdcli, ['path', `--volumedriver=${driver}`, '--volumename=bench-exec'], env), note: 'Activate + Get over the plugin socket' },
    ];
    const samples = series.map(() => [] as number[]);
    for (let i = -WARMUP; i < N; i++) {
      for (const [k, s] of series.entries()) {
        const t0 = performance.now();
        const r = (await s.run()) as { code: number | null; stderr: string };
        const ms = performance.now() - t0;
        if (r.code !== 0) throw new Error(`${s.name} exited ${r.code}: ${r.stderr}`);
        if (i >= 0) samples[k]!.push(ms);
      }
    }
    const base = summarize(GROUP, series[0]!.name, samples[0]!);
    return series.map((s, k) => {
      if (k === 0) return base;
      const r = summarize(GROUP, s.name, samples[k]!, s.note ? { note: s.note } : {});
      return { ...r, ratio: { reference: 'node -e 0 (p50)', value: r.p50Ms! / base.p50Ms! } };
    });
  } finally {
    await root.cleanup();
  }
}
