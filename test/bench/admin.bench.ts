// The admin API end to end: a real daemon (dist/berth.js) on a unix socket, measured through
// the typed client, for the dir and loop backends; the full loop cycle next to the raw OS
// steps (truncate, losetup, mkfs.ext4, mount, umount, losetup -d, rm) in the same run; and
// list / inspect with 10,000 volumes in the store.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createTmpRoot } from '../helpers/tmp-root.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { sample, summarize, type BenchResult, OS_COMMAND_ENV } from './stats.js';

const execFileP = promisify(execFile);
/** A raw reference command, in the environment berth's OS module would give it. */
const sh = (cmd: string, args: readonly string[]) => execFileP(cmd, args, { env: OS_COMMAND_ENV });
const GROUP = 'admin API (real daemon, unix socket)';

async function backendOps(d: TestDaemon, backend: 'local' | 'loop', n: number, label: string): Promise<BenchResult[]> {
  const c = d.client;
  const spec = backend === 'loop' ? { backend, size: '64MiB', fs: 'ext4' } : { backend };
  const name = (i: number) => `${backend}-${i < 0 ? `w${-i}` : i}`;
  const out: BenchResult[] = [];
  out.push(summarize(GROUP, `create (${label})`, await sample(n, (i) => c.createVolume({ name: name(i), ...spec }))));
  out.push(summarize(GROUP, `inspect (${label})`, await sample(n * 5, (i) => c.inspectVolume(name(Math.abs(i) % n)))));
  out.push(summarize(GROUP, `list (${label}, ${n + 2} volumes)`, await sample(n, () => c.listVolumes({ backend }))));
  out.push(summarize(GROUP, `mount, first reference (${label})`, await sample(n, (i) => c.mount(name(i), { consumer: 'bench' })),
    backend === 'loop' ? { note: 'losetup + mkfs.ext4 + mount' } : {}));
  out.push(summarize(GROUP, `mount, second reference (${label})`, await sample(n, (i) => c.mount(name(i), { consumer: 'bench2' }))));
  out.push(summarize(GROUP, `unmount, not last (${label})`, await sample(n, (i) => c.unmount(name(i), { consumer: 'bench2' }))));
  out.push(summarize(GROUP, `unmount, last (${label})`, await sample(n, (i) => c.unmount(name(i), { consumer: 'bench' }))));
  out.push(summarize(GROUP, `remove (${label})`, await sample(n, (i) => c.removeVolume(name(i)))));
  return out;
}

/** One full 64MiB ext4 loop cycle through the API vs the same steps run by hand. */
async function loopCycle(d: TestDaemon, n: number): Promise<BenchResult[]> {
  const c = d.client;
  const api = await sample(n, async (i) => {
    const name = `cycle-${i < 0 ? `w${-i}` : i}`;
    await c.createVolume({ name, backend: 'loop', size: '64MiB', fs: 'ext4' });
    await c.mount(name, { consumer: 'bench' });
    await c.unmount(name, { consumer: 'bench' });
    await c.removeVolume(name);
  });
  const dir = d.root.path('raw');
  await sh('mkdir', ['-p', `${dir}/mnt`]);
  const raw = await sample(n, async () => {
    const img = `${dir}/raw.img`;
    await sh('truncate', ['-s', '64M', img]);
    const dev = (await sh('losetup', ['--find', '--show', img])).stdout.trim();
    await sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', dev]);
    await sh('mount', [dev, `${dir}/mnt`]);
    await sh('umount', [`${dir}/mnt`]);
    await sh('losetup', ['-d', dev]);
    await sh('rm', ['-f', img]);
  });
  const rawR = summarize(GROUP, 'raw OS cycle: truncate, losetup, mkfs.ext4, mount, umount, losetup -d, rm', raw);
  const apiR = summarize(GROUP, 'API cycle: create, mount, unmount, remove (loop 64MiB ext4)', api, {
    ratio: { reference: 'raw OS cycle (p50)', value: apiR_p50(apiR0(api), rawR) },
  });
  return [apiR, rawR];
}
const apiR0 = (xs: number[]) => summarize(GROUP, '', xs).p50Ms!;
const apiR_p50 = (apiP50: number, raw: BenchResult) => apiP50 / raw.p50Ms!;

/** 10,000 dir volumes created through the API (32 in flight), then list / inspect. */
async function manyVolumes(d: TestDaemon): Promise<BenchResult[]> {
  const c = d.client;
  const total = 10_000;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let i = next++; i < total; i = next++) await c.createVolume({ name: `bulk-${i}`, labels: { shard: String(i % 100) } });
    }),
  );
  const fillMs = performance.now() - t0;
  const note = '10,000 volumes in the store';
  const ids = (await c.listVolumes({ labels: { shard: '3' } })).map((v) => v.id);
  return [
    { group: GROUP, name: 'create x10,000 (32 concurrent clients)', n: total, opsPerSec: (total * 1000) / fillMs, note: 'throughput, not latency' },
    summarize(GROUP, 'inspect by name', await sample(1000, (i) => c.inspectVolume(`bulk-${Math.abs(i * 7919) % total}`)), { note }),
    summarize(GROUP, 'inspect by id', await sample(1000, (i) => c.inspectVolume(ids[Math.abs(i) % ids.length]!)), { note }),
    summarize(GROUP, 'list (all)', await sample(20, () => c.listVolumes()), { note: `${note}, ~3 MB of JSON (mostly encode in the daemon + decode in the client)` }),
    summarize(GROUP, 'list (label filter, 100 match)', await sample(100, () => c.listVolumes({ labels: { shard: '7' } })), { note }),
    summarize(GROUP, 'status', await sample(200, () => c.status()), { note }),
  ];
}

export async function run(): Promise<BenchResult[]> {
  const root = createTmpRoot('bench-admin');
  try {
    const d = await startTestDaemon(root, { logLevel: 'warn', sourceMaps: false });
    const out: BenchResult[] = [];
    out.push(...(await backendOps(d, 'local', 100, 'dir')));
    out.push(...(await backendOps(d, 'loop', 20, 'loop 64MiB ext4')));
    out.push(...(await loopCycle(d, 10)));
    out.push(...(await manyVolumes(d)));
    return out;
  } finally {
    await root.cleanup();
  }
}
