/**
 * Docker volume plugin benchmarks against a real dockerd and a real berth daemon:
 * 1. The user-visible cycle `docker volume create` + `docker run --rm -v` + `docker volume rm`
 *    with berth (dir and loop ext4 64 MiB) next to Docker's built-in `local` driver, in the
 *    same run, interleaved round by round; ratio = median over rounds of berth / local
 *    (goal: dir within 1.10).
 * 2. Plugin-protocol calls straight over the socket (keep-alive, as Docker does): Get, List
 *    (50 volumes), Mount and Unmount (each one a first/last reference, so a real mount/unmount).
 */
import { request, Agent } from 'node:http';
import { percentile, summarize, sample, type BenchResult } from './stats.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, ensureTestImage, uniqueName } from '../helpers/docker.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { useDockerEngine } from '../helpers/dockerd.js';
import { createTmpRoot } from '../helpers/tmp-root.js';

const CYCLE_GROUP = 'docker (volume create + run + rm, real dockerd)';
const PROTO_GROUP = 'docker plugin protocol (over the unix socket)';
const CYCLES = 20;
const WARMUP = 2;

export async function run(): Promise<BenchResult[]> {
  const engine = await useDockerEngine();
  const root = createTmpRoot('bench-docker');
  // Deferred steps run last-in first-out: the engine (stopped if this run started it and
  // nothing else uses it) after all else, then the driver name and its socket.
  root.defer(() => engine.release());
  const image = await ensureTestImage();
  const held = await acquireDriver('benchDocker');
  const { driver } = held;
  const socket = held.socket!;
  root.defer(held.release);
  try {
    const berth = await startTestDaemon(root, {
      defaultBackend: 'local',
      sourceMaps: false,
      config: { docker: { enabled: true, driverName: driver, socket } },
    });
    root.defer(() => cleanupDocker({ driver }));

    const variants = [
      { name: 'local (Docker built-in)', args: ['-d', 'local'] },
      { name: 'berth dir', args: ['-d', driver, '-o', 'backend=local'] },
      { name: 'berth loop ext4 64MiB', args: ['-d', driver, '-o', 'backend=loop', '-o', 'size=64MiB'] },
    ];
    const engine = await docker(['version', '--format', '{{.Server.Version}}']);
    // Containers run on the default network, as a user's would (the test suites use
    // --network none, which costs ~0.14 s more per container here but leaves nothing behind
    // when dockerd is killed); the engine this bench started is stopped cleanly at the end.
    const cycle = async (args: string[]) => {
      const v = uniqueName('bench');
      const t0 = performance.now();
      await docker(['volume', 'create', ...args, v]);
      await docker(['run', '--rm', '-v', `${v}:/data`, image, 'sh', '-c', 'echo x > /data/f']);
      await docker(['volume', 'rm', v]);
      return performance.now() - t0;
    };
    for (let w = 0; w < WARMUP; w++) for (const x of variants) await cycle(x.args);
    const samples = variants.map(() => [] as number[]);
    for (let i = 0; i < CYCLES; i++) {
      for (const [j, x] of variants.entries()) samples[j]!.push(await cycle(x.args));
    }
    const results: BenchResult[] = [];
    const local = { ...summarize(CYCLE_GROUP, `cycle ${variants[0]!.name}`, samples[0]!), note: `dockerd ${engine}` };
    results.push(local);
    for (let j = 1; j < variants.length; j++) {
      const r = summarize(CYCLE_GROUP, `cycle ${variants[j]!.name}`, samples[j]!);
      // Median of per-round ratios: each round runs local and berth back to back, so a
      // load spike on this shared machine hits both sides of the same ratio.
      const paired = samples[j]!.map((ms, i) => ms / samples[0]![i]!).sort((a, b) => a - b);
      results.push({
        ...r,
        ratio: { reference: 'local', value: percentile(paired, 50) },
        note: `p50/p50 ${(r.p50Ms! / local.p50Ms!).toFixed(2)}`,
      });
    }

    results.push(...(await protocolBench(socket)));
    await berth.stop();
    return results;
  } finally {
    await root.cleanup();
  }
}

/** Plugin-protocol latencies over one keep-alive connection, as dockerd holds it. */
async function protocolBench(socket: string): Promise<BenchResult[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const call = (method: string, body: unknown) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const text = `${JSON.stringify(body)}\n`;
      const req = request(
        { socketPath: socket, agent, path: `/${method}`, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(text) } },
        (res) => {
          let out = '';
          res.on('data', (c: Buffer) => (out += c.toString()));
          res.on('end', () => {
            const json = JSON.parse(out) as Record<string, unknown>;
            if (json.Err) reject(new Error(`${method}: ${String(json.Err)}`));
            else resolve(json);
          });
        },
      );
      req.on('error', reject);
      req.end(text);
    });
  try {
    const names = Array.from({ length: 50 }, (_, i) => `proto-${i}`);
    for (const n of names) await call('VolumeDriver.Create', { Name: n, Opts: { backend: 'local' } });
    const v = names[0]!;
    const get = await sample(1000, () => call('VolumeDriver.Get', { Name: v }), 50);
    const list = await sample(300, () => call('VolumeDriver.List', {}), 20);
    const mount: number[] = [];
    const unmount: number[] = [];
    for (let i = -5; i < 300; i++) {
      const id = `bench${i}`.padEnd(64, '0');
      let t0 = performance.now();
      await call('VolumeDriver.Mount', { Name: v, ID: id });
      if (i >= 0) mount.push(performance.now() - t0);
      t0 = performance.now();
      await call('VolumeDriver.Unmount', { Name: v, ID: id });
      if (i >= 0) unmount.push(performance.now() - t0);
    }
    for (const n of names) await call('VolumeDriver.Remove', { Name: n });
    return [
      summarize(PROTO_GROUP, 'Get', get),
      summarize(PROTO_GROUP, 'List (50 volumes)', list),
      summarize(PROTO_GROUP, 'Mount (dir, first reference)', mount),
      summarize(PROTO_GROUP, 'Unmount (dir, last reference)', unmount),
    ];
  } finally {
    agent.destroy();
  }
}
