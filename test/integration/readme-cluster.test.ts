// The README's "Cluster mode" walkthrough, run as a new user runs it: every ```sh block of
// that section, in order, through bash, with only this suite's paths, ports and names put in
// (the root under /tmp instead of /srv/berth-cluster, free etcd ports, the pool's Docker driver
// names for berth-a and berth-b, unique volume and container names, the test image for busybox;
// the apt-get line is left out: CI and install.sh install those packages). Between the blocks it
// checks what the section promises, which is the Done-when of issues 10 and 11:
// - a volume made through Docker on node a is listed by `berth volume ls` on node c and by CSI
//   ListVolumes on node b;
// - after kill -9 of node a's daemon, node b's mount is refused, naming node-a, until node a is
//   fenced; then node b's Docker mounts the volume and sees, in order, every record node a's
//   writer was told was synced, and node a's writer can no longer change the image;
// - node a rejoins and lets go of its old copy; the clean-up block leaves nothing running or
//   mounted.
// Whatever fails, the clean-up below stops every process the blocks started and the root's
// sweep takes down every mount and loop device under it.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { killFromPidFile } from '../helpers/cluster.js';
import { createCsiClient } from '../helpers/csi-client.js';
import { BERTH_JS, REPO_ROOT, runBerth } from '../helpers/daemon.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { dockerRun, ensureTestImage, uniqueName, waitFor } from '../helpers/docker.js';
import { freePort } from '../helpers/etcd.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

/** The section's ```sh blocks, in order. */
export function clusterBlocks(readme: string): string[] {
  const start = readme.indexOf('\n## Cluster mode\n');
  if (start < 0) throw new Error('README.md has no "## Cluster mode" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

interface Names {
  readonly dir: string;
  readonly etcdPort: number;
  readonly peerPort: number;
  readonly driverA: string;
  readonly driverB: string;
  readonly volume: string;
  readonly writer: string;
  readonly reader: string;
  readonly image: string;
}

/** What the README says, with this suite's names; fails when a README word it replaces is gone. */
function localize(block: string, n: Names): string {
  const swaps: Array<[RegExp, string]> = [
    [/^apt-get .*\n/gm, ''],
    [/\/srv\/berth-cluster/g, n.dir],
    [/\b12379\b/g, String(n.etcdPort)],
    [/\b12380\b/g, String(n.peerPort)],
    [/\bberth-a\b/g, n.driverA],
    [/\bberth-b\b/g, n.driverB],
    [/\bledger\b/g, n.volume],
    [/\bwriter\b/g, n.writer],
    [/\breader\b/g, n.reader],
    [/(docker save |--volume-driver \S+ )busybox\b/g, `$1${n.image}`],
  ];
  let out = block;
  for (const [re, to] of swaps) out = out.replace(re, to);
  return out;
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one block with `bash -e` (the `berth` on PATH is this checkout's), failing on a non-zero exit. */
function runBlock(script: string, bin: string, timeoutMs = 180_000): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  for (const k of Object.keys(env)) if (k.startsWith('BERTH_')) delete env[k];
  return new Promise((resolve, reject) => {
    const c = spawn('bash', ['-e', '-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('error', reject);
    // 'exit', not 'close': a process a block leaves running must not hold the test up.
    c.once('exit', (code) => {
      clearTimeout(timer);
      setImmediate(() => {
        const r = { code, stdout, stderr };
        if (code === 0) resolve(r);
        else reject(new Error(`README block failed (exit ${code}):\n${script}\n--- stdout\n${stdout.slice(-3000)}\n--- stderr\n${stderr.slice(-3000)}`));
      });
    });
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function pidFrom(file: string, cmdline: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cmdline) ? pid : null;
  } catch {
    return null;
  }
}

/** Fence agents serving a state root under `dir` (found by their command line: a keeper may have started one its pid file does not name). */
function agentsUnder(dir: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('--state-root');
      if (argv.includes('fence-agent') && i > 0 && argv[i + 1]?.startsWith(`${dir}/`)) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs`; waits until it is gone. */
async function stopPid(pid: number | null, graceMs = 20_000): Promise<void> {
  if (pid === null || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
}

/** Stops what the blocks may have left running (a failed run): containers, node b's dockerd, the nodes, their agents, etcd. */
function deferStopEverything(root: TmpRoot, n: Names): void {
  root.defer(async () => {
    const dockerB = ['-H', `unix://${n.dir}/b/docker.sock`];
    if (existsSync(`${n.dir}/b/docker.sock`)) await dockerRun([...dockerB, 'rm', '-f', n.reader], 60_000);
    // The shared dockerd forgets node a's container and volume only through node a's berth
    // (with it dead, `docker volume rm -f` keeps the record): start it again if it was killed.
    const config = `${n.dir}/a/config.yaml`;
    if (existsSync(config) && pidFrom(`${n.dir}/a/state/daemon.pid`, 'berth') === null && pidFrom(`${n.dir}/etcd.pid`, 'etcd') !== null) {
      const log = openSync(`${n.dir}/a/berth.log`, 'a');
      spawn(process.execPath, [BERTH_JS, 'serve', '--config', config], { detached: true, stdio: ['ignore', log, log] }).unref();
      closeSync(log);
      await waitFor('node a\'s berth to start again for the clean-up', async () => (await runBerth(['status'], { socket: `${n.dir}/a/berth.sock` })).code === 0).catch(() => undefined);
    }
    await dockerRun(['rm', '-f', n.writer], 60_000);
    if (existsSync(`/run/docker/plugins/${n.driverA}.sock`)) await dockerRun(['volume', 'rm', '-f', n.volume], 60_000);
    await stopPid(pidFrom(`${n.dir}/b/docker.pid`, 'dockerd'), 30_000);
    for (const node of ['a', 'b', 'c']) await stopPid(pidFrom(`${n.dir}/${node}/state/daemon.pid`, 'berth'));
    for (const node of ['a', 'b', 'c']) killFromPidFile(`${n.dir}/${node}/state/fence-agent.pid`);
    for (const pid of agentsUnder(n.dir)) await stopPid(pid, 5_000);
    await stopPid(pidFrom(`${n.dir}/etcd.pid`, 'etcd'));
  });
}

/** The numbered records in the ledger file, checked to be 1..M in order; returns M. */
function lastRecord(ledger: string): number {
  const lines = ledger.split('\n').filter(Boolean);
  expect(lines).toEqual(lines.map((_, i) => `record ${i + 1}`));
  return lines.length;
}

const synced = (logs: string) => [...logs.matchAll(/^synced (\d+)$/gm)].map((m) => Number(m[1]));
const failed = (logs: string) => [...logs.matchAll(/^failed (\d+)$/gm)].map((m) => Number(m[1]));

describe('README "Cluster mode"', () => {
  it('three nodes on one machine, as written: Docker on node a writes, its daemon is killed, node b mounts once a is fenced and finds every synced record', async () => {
    const root = roots.create('readme-cluster');
    const drivers = [await acquireDriver('readmeCluster'), await acquireDriver('readmeCluster')] as const;
    root.defer(drivers[0].release);
    root.defer(drivers[1].release);
    const n: Names = {
      dir: root.path('c'),
      etcdPort: await freePort(),
      peerPort: await freePort(),
      driverA: drivers[0].driver,
      driverB: drivers[1].driver,
      volume: uniqueName('ledger'),
      writer: uniqueName('berth-readme-writer'),
      reader: uniqueName('berth-readme-reader'),
      image: await ensureTestImage(),
    };
    expect(n.etcdPort).not.toBe(n.peerPort);
    const bin = root.path('bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'berth'), `#!/bin/sh\nexec '${process.execPath}' '${BERTH_JS}' "$@"\n`);
    chmodSync(join(bin, 'berth'), 0o755);
    deferStopEverything(root, n);

    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const blocks = clusterBlocks(readme);
    expect(blocks).toHaveLength(7);
    const section = blocks.join('\n');
    for (const word of ['/srv/berth-cluster', '12379', '12380', 'berth-a', 'berth-b', 'ledger', 'writer', 'reader', 'busybox']) {
      expect(section, `the README section uses ${word}`).toContain(word);
    }
    const [setup, write, kill, fence, takeover, rejoin, cleanup] = blocks.map((b) => localize(b, n)) as [string, string, string, string, string, string, string];
    for (const b of [setup, write, kill, fence, takeover, rejoin, cleanup]) {
      expect(b).not.toMatch(/\/srv\/|\b1238[0-9]\b|\bberth-[ab]\b|--volume-driver \S+ busybox/);
    }
    const run = (script: string) => runBlock(script, bin);
    const dockerB = (args: string[]) => dockerRun(['-H', `unix://${n.dir}/b/docker.sock`, ...args]);
    const writerLogs = async () => (await dockerRun(['logs', n.writer])).stdout;
    const ledgerOnB = async () => {
      const r = await dockerB(['exec', n.reader, 'cat', `/data/${n.volume}`]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };

    // Three nodes on one etcd, each alive with its shared backend.
    const up = await run(setup);
    for (const id of ['node-a', 'node-b', 'node-c']) expect(up.stdout).toMatch(new RegExp(`^ ${id}\\s+(?:yes|-)\\s+\\S+\\s+\\S+\\s+alive\\s.*shared \\(shared\\)`, 'm'));

    // Docker on node a makes and writes the volume; node c lists it, attached on node-a.
    const written = await run(write);
    expect(written.stdout).toMatch(new RegExp(`^ ${n.volume}\\s+shared\\s+256MiB\\s+ext4\\s+ready`, 'm'));
    expect(written.stdout).toMatch(/^ Attachments\s+node-a /m);
    const id = /^ ID\s+(vol-\S+)/m.exec(written.stdout)![1]!;
    const csi = createCsiClient(`${n.dir}/b/csi.sock`);
    try {
      const entries = (await csi.controller('ListVolumes', {})).entries as Array<{ volume: { volume_id: string } }>;
      expect(entries.map((e) => e.volume.volume_id)).toContain(id);
    } finally {
      csi.close();
    }
    expect(synced(await writerLogs()).length).toBeGreaterThanOrEqual(50);

    // kill -9 of node a's daemon: node b's mount is refused, naming node-a.
    const killed = await run(kill);
    expect(killed.stdout).toContain('refused');
    expect(killed.stderr).toMatch(/held by node "node-a"/);
    expect(readFileSync(`${n.dir}/b/berth.log`, 'utf8')).not.toMatch(new RegExp(`"op":"mount","volume":"${n.volume}"[^\\n]*"outcome":"ok"`));

    // The fence: node a's agent shuts the filesystem down, the writer's writes fail.
    const fenced = await run(fence);
    expect(fenced.stdout).toMatch(/^node-a: fenced \(confirmed by its agent; 1 filesystem\(s\) shut down\)$/m);
    const logs = await writerLogs();
    const lastSynced = Math.max(...synced(logs));
    const firstFailed = Math.min(...failed(logs));
    expect(fenced.stdout).toContain(`synced ${lastSynced}\n`);
    expect(firstFailed).toBe(lastSynced + 1); // the writer never got a "synced" after a failure
    const late = await dockerRun(['exec', n.writer, 'sh', '-c', `echo late >> /data/${n.volume}`]);
    expect(late.code).not.toBe(0);
    expect(late.stderr).toMatch(/Input\/output error/);

    // Node b's Docker mounts it: every synced record, in order; nothing after the fence.
    const taken = await run(takeover);
    const first = await ledgerOnB();
    const m = lastRecord(first);
    expect(m).toBeGreaterThanOrEqual(lastSynced);
    expect(m).toBeLessThanOrEqual(firstFailed); // at most the one in flight when the fence came
    expect(taken.stdout).toContain(`record ${m}\n`);
    expect(taken.stdout).toMatch(/^ node-a\s.*fenced\s/m);
    expect(taken.stdout).toMatch(/^ node-b\s+(?:yes|-)\s+\S+\s+\S+\s+alive\s+now\s+1\s/m);
    expect(taken.stdout).toMatch(/^ Node\s+node-b\s*$/m);
    expect(taken.stdout).toMatch(new RegExp(`^ Cluster\\s+etcd http://127.0.0.1:${n.etcdPort} prefix /berth/; 3 node\\(s\\)`, 'm'));
    // Node a's writer goes on trying (20 more failures), and the volume does not change.
    const tried = Math.max(...failed(await writerLogs()));
    await waitFor('node a\'s writer to try 20 more times', async () => Math.max(...failed(await writerLogs())) >= tried + 20);
    expect(await ledgerOnB()).toBe(first);
    expect(synced(await writerLogs()).every((i) => i <= lastSynced)).toBe(true);

    // Node a rejoins: ledger is node b's; once its container is gone nothing of node a holds the image.
    const back = await run(rejoin);
    expect(back.stdout).toMatch(/^ Attachments\s+node-b /m);
    expect(back.stdout).toContain('node-a: unfenced');
    expect(readFileSync(`${n.dir}/a/berth.log`, 'utf8')).toMatch(/moved to another node while this one was away/);
    await waitFor('node a to let go of its old copy', async () => leftovers(`${n.dir}/a`).loops.length === 0);
    expect(leftovers(`${n.dir}/a/state/mounts`).mounts).toEqual([`${n.dir}/a/state/mounts`]);
    expect(await ledgerOnB()).toBe(first);

    // The clean-up block leaves nothing: no process, mount, loop device, plugin socket.
    const pids = [
      pidFrom(`${n.dir}/etcd.pid`, 'etcd'),
      pidFrom(`${n.dir}/b/docker.pid`, 'dockerd'),
      ...['a', 'b', 'c'].flatMap((x) => [pidFrom(`${n.dir}/${x}/state/daemon.pid`, 'berth'), pidFrom(`${n.dir}/${x}/state/fence-agent.pid`, 'fence-agent')]),
    ];
    expect(pids.every((p) => p !== null)).toBe(true);
    await run(cleanup);
    expect(pids.filter((p) => alive(p!))).toEqual([]);
    expect(agentsUnder(n.dir)).toEqual([]);
    expect(existsSync(n.dir)).toBe(false);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
    for (const d of drivers) expect(existsSync(d.socket!)).toBe(false);
  }, 480_000);
});
