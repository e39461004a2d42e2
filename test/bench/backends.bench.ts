// dir and loop backends next to the raw OS cost of the same steps, measured in the same run:
// a 64 MiB ext4 volume's life (truncate, losetup, mkfs.ext4 + mount + mkdir data, umount, losetup -d, rm)
// done by hand with the plain commands, then through the loop backend
// (create, attach, first mount = mkfs + mount, unmount, detach, delete), then through dir.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canAttach, type Backend, type BackendVolume } from '../../core/backend.js';
import { createSilentLogger } from '../../core/log.js';
import { createExec } from '../../core/os/exec.js';
import { createDirBackend } from '../../backends/dir/dir.js';
import { createLoopBackend } from '../../backends/loop/loop.js';
import { sweepRoot } from '../helpers/cleanup.js';
import { summarize, type BenchResult, OS_COMMAND_ENV } from './stats.js';

const execFileP = promisify(execFile);
/** A raw reference command, in the environment berth's OS module would give it. */
const sh = (cmd: string, args: readonly string[]) => execFileP(cmd, args, { env: OS_COMMAND_ENV });
const GROUP = 'backends (raw OS vs backend)';
const N = 20;
const SIZE = 64 * 1024 * 1024;
const ID_CHARS = '0123456789abcdefghjkmnpqrstvwxyz';
const newId = () => `vol-${[...randomBytes(26)].map((b) => ID_CHARS[b % 32]).join('')}`;

type Steps = Record<string, number[]>;

async function timed(steps: Steps, name: string, fn: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  await fn();
  (steps[name] ??= []).push(performance.now() - t0);
}

/** The loop lifecycle with the plain commands, each step timed. */
async function rawCycle(root: string, i: number, steps: Steps): Promise<void> {
  const img = join(root, `raw-${i + 2}.img`);
  const mnt = join(root, `raw-${i + 2}`);
  await mkdir(mnt);
  await timed(steps, 'truncate', () => sh('truncate', ['-s', String(SIZE), img]));
  let dev = '';
  await timed(steps, 'losetup', async () => (dev = (await sh('losetup', ['--find', '--show', img])).stdout.trim()));
  await timed(steps, 'mkfs.ext4 + mount', async () => {
    await sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', dev]);
    await sh('mount', ['-t', 'ext4', dev, mnt]);
    // The backend's contract puts consumers in a data/ subdirectory; making it dirties the new
    // filesystem, which the next umount must write back (~2 ms), so the reference does it too.
    await mkdir(join(mnt, 'data'));
  });
  await timed(steps, 'umount', () => sh('umount', [mnt]));
  await timed(steps, 'losetup -d', () => sh('losetup', ['-d', dev]));
  await timed(steps, 'rm', () => rm(img));
}

const NODE = 'bench-node';

/** The same lifecycle through a backend. */
async function backendCycle(b: Backend, steps: Steps): Promise<void> {
  const spec = b.validateCreate({ sizeBytes: b.capabilities.sizeEnforced ? SIZE : 0, fsType: null, volumeMode: 'filesystem', options: {} });
  const vol: BackendVolume = { id: newId(), name: 'bench', ...spec };
  await timed(steps, 'create', () => b.create(vol));
  let device: string | null = null;
  // Kept as steps for backends without devices too (nothing to do), so the table lines up.
  await timed(steps, 'attach', async () => (device = canAttach(b) ? (await b.attach(vol, { node: NODE })).device : null));
  await timed(steps, 'mount (first: mkfs + mount)', () => b.mount(vol, { node: NODE, device }));
  await timed(steps, 'unmount', () => b.unmount(vol));
  await timed(steps, 'detach', async () => (canAttach(b) ? b.detach(vol) : undefined));
  await timed(steps, 'delete', () => b.delete(vol));
}

/**
 * Runs the raw, loop and dir cycles interleaved (raw, loop, dir, raw, ...) so load from
 * anything else on the machine falls on all three alike and the ratios stay fair.
 */
async function interleaved(n: number, fns: ReadonlyArray<(i: number, steps: Steps) => Promise<void>>): Promise<Steps[]> {
  const all: Steps[] = fns.map(() => ({}));
  for (let i = -2; i < n; i++) {
    for (const [k, fn] of fns.entries()) {
      const steps = i < 0 ? {} : all[k]!; // two warm-up rounds
      const t0 = performance.now();
      await fn(i, steps);
      (steps['whole cycle'] ??= []).push(performance.now() - t0);
    }
  }
  return all;
}

const p50 = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function run(): Promise<BenchResult[]> {
  const root = await mkdtemp(join(tmpdir(), 'berth-bench-backends-'));
  try {
    const ctx = (name: string) => ({ name, settings: {}, stateRoot: join(root, name), node: NODE, exec: createExec(), log: createSilentLogger() });
    const loopBackend = await createLoopBackend(ctx('loop'));
    const dirBackend = await createDirBackend(ctx('dir'));
    const [raw, loop, dir] = (await interleaved(N, [
      (i, steps) => rawCycle(root, i, steps),
      (_i, steps) => backendCycle(loopBackend, steps),
      (_i, steps) => backendCycle(dirBackend, steps),
    ])) as [Steps, Steps, Steps];

    const out: BenchResult[] = [];
    for (const [name, xs] of Object.entries(raw)) out.push(summarize(GROUP, `raw ${name} (64MiB ext4)`, xs));
    const reference: Record<string, string> = {
      create: 'truncate', attach: 'losetup', 'mount (first: mkfs + mount)': 'mkfs.ext4 + mount', unmount: 'umount', detach: 'losetup -d', delete: 'rm', 'whole cycle': 'whole cycle',
    };
    for (const [name, xs] of Object.entries(loop)) {
      const ref = raw[reference[name] ?? ''];
      const r = summarize(GROUP, `loop ${name} (64MiB ext4)`, xs);
      out.push(ref ? { ...r, ratio: { reference: `raw ${reference[name]}`, value: r.p50Ms! / p50(ref) } } : r);
    }
    for (const [name, xs] of Object.entries(dir)) out.push(summarize(GROUP, `dir ${name}`, xs, { note: 'no device, no OS mount' }));
    return out;
  } finally {
    await sweepRoot(root);
    await rm(root, { recursive: true, force: true });
  }
}
