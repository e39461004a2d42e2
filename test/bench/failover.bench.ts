// Cluster mode, issue 11: how fast a volume follows its container to another node, and what
// cluster mode costs a mount. Two nodes on one real etcd (test/helpers/cluster.ts), each a real
// daemon in a mount namespace of its own, one shared loop backend (64MiB ext4 volumes).
// - failover: node a holds a mounted volume; its berth is killed; the time until node b's
//   mount of the volume returns (b retries every 20 ms while it is refused). For two lease
//   TTLs, each reported against the configured TTL:
//   - node crash: a's daemon AND its fence agent killed -9, so b takes over once both leases
//     expired (the "down" rule: nothing of berth left there to renew them);
//   - daemon killed, operator fence right after (`berth node fence a` from b): a's fence agent
//     shuts the filesystem down and acknowledges, then b mounts;
//   - daemon killed, b mounts with preempt: a's fence agent shuts its copy down and gives the
//     hold up.
// - cluster attach+mount: mount (first reference: loop attach + filesystem mount) and unmount
//   (last: umount + detach) of an already formatted volume, on node b of the cluster beside a
//   single-node daemon (SQLite, same loop driver, not shared) in the same run, rounds interleaved.
import { createTmpRoot, type TmpRoot } from '../helpers/tmp-root.js';
import { readdirSync, readFileSync } from 'node:fs';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import type { AdminClient } from '../../frontends/admin/client.js';
import { summarize, type BenchResult } from './stats.js';

const GROUP = 'failover';
const MOUNT_GROUP = 'cluster attach+mount';
const TTLS = [4_000, 8_000] as const;
const ROUNDS = 3;

const refused = (err: unknown) => (err as { kind?: string }).kind === 'FailedPrecondition';

/** Mounts `name` on `client`, retrying every 20 ms while it is refused because another node holds it. */
async function mountWhenFree(client: AdminClient, name: string, opts: { preempt?: boolean } = {}, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.mount(name, { consumer: 'bench', ...opts });
      return;
    } catch (err) {
      if (!refused(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Fence agents of a state root, by command line (one just started has not written its pid file yet). */
function agentPids(stateRoot: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.includes('fence-agent') && argv[argv.indexOf('--state-root') + 1] === stateRoot) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

type Kill = 'crash' | 'fence' | 'preempt';

/** One failover: a holds `name` mounted, loses its berth the `kill` way, b mounts; returns ms from the kill to b's mount. */
async function failoverOnce(c: TestCluster, name: string, kill: Kill): Promise<number> {
  const [a, b] = [c.node('a'), c.node('b')];
  await a.client.createVolume({ name, backend: 'sloop', size: '64MiB', fs: 'ext4' });
  await a.client.mount(name, { consumer: 'bench' });
  // A steady start: a's daemon and its fence agent both hold their leases.
  await waitUntil(async () => (await b.client.nodes()).some((x) => x.id === 'a' && x.alive && x.agentAlive));
  await a.kill('SIGKILL');
  if (kill === 'crash') for (const pid of agentPids(a.stateRoot)) process.kill(pid, 'SIGKILL');
  const t0 = performance.now();
  if (kill === 'fence') await b.client.fenceNode('a');
  await mountWhenFree(b.client, name, kill === 'preempt' ? { preempt: true } : {});
  const ms = performance.now() - t0;
  // Back to the start: a comes back (its agent too), lets go of what moved away, is unfenced.
  if (kill === 'fence') await b.client.unfenceNode('a');
  await a.start();
  await b.client.unmount(name, { consumer: 'bench' });
  await waitUntil(async () => (await a.client.inspectVolume(name)).attachments.length === 0);
  await b.client.removeVolume(name);
  return ms;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('bench: condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function failover(root: TmpRoot, ttl: number): Promise<BenchResult[]> {
  const c = await startCluster(root, { nodes: ['a', 'b'], namespaces: true, leaseTtlMs: ttl, selfFenceMs: ttl / 2, daemon: () => ({ logLevel: 'info' }) });
  const out: BenchResult[] = [];
  const labels: Record<Kill, string> = {
    crash: 'node crash (daemon + fence agent kill -9) -> mounted on b',
    fence: 'daemon kill -9, `berth node fence` at once -> mounted on b',
    preempt: 'daemon kill -9, b mounts with preempt -> mounted on b',
  };
  for (const kill of ['crash', 'fence', 'preempt'] as const) {
    const samples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) samples.push(await failoverOnce(c, `fo-${kill}-${i}`, kill));
    const r = summarize(GROUP, `${labels[kill]}, lease TTL ${ttl / 1000} s`, samples);
    out.push({ ...r, opsPerSec: undefined, ratio: { reference: `the lease TTL (${ttl} ms, p50)`, value: r.p50Ms! / ttl }, note: `self-fence ${ttl / 2000} s` });
  }
  return out;
}

/** Mount / unmount latency of formatted volumes: cluster node b beside a single-node daemon, rounds interleaved. */
async function attachMount(c: TestCluster, single: TestDaemon, n: number): Promise<BenchResult[]> {
  const sides = [
    { label: 'cluster (etcd catalog, shared loop)', client: c.node('b').client, backend: 'sloop', mount: [] as number[], unmount: [] as number[] },
    { label: 'single node (SQLite, loop)', client: single.client, backend: 'loop', mount: [] as number[], unmount: [] as number[] },
  ];
  for (const s of sides) {
    for (let i = 0; i < n; i++) {
      await s.client.createVolume({ name: `am-${i}`, backend: s.backend, size: '64MiB', fs: 'ext4' });
      await s.client.mount(`am-${i}`, { consumer: 'bench' }); // mkfs on first use, not measured
      await s.client.unmount(`am-${i}`, { consumer: 'bench' });
    }
  }
  for (let i = 0; i < n; i++) {
    for (const s of i % 2 === 0 ? sides : [...sides].reverse()) {
      let t0 = performance.now();
      await s.client.mount(`am-${i}`, { consumer: 'bench' });
      s.mount.push(performance.now() - t0);
      t0 = performance.now();
      await s.client.unmount(`am-${i}`, { consumer: 'bench' });
      s.unmount.push(performance.now() - t0);
    }
  }
  for (const s of sides) for (let i = 0; i < n; i++) await s.client.removeVolume(`am-${i}`);
  const [cl, sn] = sides as [typeof sides[0], typeof sides[0]];
  const m = summarize(MOUNT_GROUP, `mount, first reference: attach + mount (${cl.label})`, cl.mount);
  const ms = summarize(MOUNT_GROUP, `mount, first reference: attach + mount (${sn.label})`, sn.mount);
  const u = summarize(MOUNT_GROUP, `unmount, last reference: umount + detach (${cl.label})`, cl.unmount);
  const us = summarize(MOUNT_GROUP, `unmount, last reference: umount + detach (${sn.label})`, sn.unmount);
  return [
    { ...m, ratio: { reference: 'single node (p50)', value: m.p50Ms! / ms.p50Ms! } },
    ms,
    { ...u, ratio: { reference: 'single node (p50)', value: u.p50Ms! / us.p50Ms! } },
    us,
  ];
}

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const ttl of TTLS) {
    const root = createTmpRoot(`bench-failover-${ttl}`);
    try {
      out.push(...(await failover(root, ttl)));
    } finally {
      await root.cleanup();
    }
  }
  const root = createTmpRoot('bench-cluster-mount');
  try {
    const c = await startCluster(root, { nodes: ['a', 'b'], namespaces: true, daemon: () => ({ logLevel: 'warn' }) });
    const single = await startTestDaemon(root, { subdir: 'single', logLevel: 'warn', sourceMaps: false });
    out.push(...(await attachMount(c, single, 30)));
  } finally {
    await root.cleanup();
  }
  return out;
}
