// btrfs backend data services: how long create / snapshot / restore / clone / expand take on
// a pool holding a volume with 64 MiB of data, next to a plain full copy of that data
// (cp --reflink=never), which is what a backend without snapshots would have to do.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BackendVolume } from '../../core/backend.js';
import { createSilentLogger } from '../../core/log.js';
import { createExec } from '../../core/os/exec.js';
import { createBtrfsBackend } from '../../backends/btrfs/btrfs.js';
import { makeBtrfsPool, writeMiB } from '../helpers/btrfs-pool.js';
import { sample, summarize, type BenchResult, OS_COMMAND_ENV } from './stats.js';

const execFileP = promisify(execFile);
/** A raw reference command, in the environment berth's OS module would give it. */
const sh = (cmd: string, args: readonly string[]) => execFileP(cmd, args, { env: OS_COMMAND_ENV });
const MiB = 1024 * 1024;
const DATA_MIB = 64;
const N = 20;
const GROUP = 'btrfs backend';

const newId = (prefix: 'vol' | 'snap') => `${prefix}-${randomBytes(16).toString('hex').slice(0, 26)}`;
const vol = (sizeBytes: number): BackendVolume => ({ id: newId('vol'), name: 'bench', sizeBytes, fsType: null, volumeMode: 'filesystem', options: {} });

export async function run(): Promise<BenchResult[]> {
  const pool = await makeBtrfsPool({ sizeMiB: 1024, prefix: 'berth-bench-btrfs-' });
  try {
    const backend = await createBtrfsBackend({
      name: 'bench', settings: { pool: pool.pool }, stateRoot: pool.root, node: 'bench-node', exec: createExec(), log: createSilentLogger(),
    });
    const size = 256 * MiB;
    const source = vol(size);
    await backend.create(source);
    const { path } = await backend.mount(source, { node: 'bench-node', device: null });
    await writeMiB(join(path, 'data'), DATA_MIB);
    await sh('sync', ['-f', path]);

    const create = await sample(N, () => backend.create(vol(size)));
    const snaps: Array<{ id: string; volumeId: string; sizeBytes: number }> = [];
    const snapshot = await sample(N, async () => {
      const s = { id: newId('snap'), volumeId: source.id, sizeBytes: size };
      await backend.createSnapshot!(source, s);
      snaps.push(s);
    });
    const restore = await sample(N, (i) => backend.createFromSnapshot!(vol(size), snaps[Math.max(0, i)]!));
    const clone = await sample(N, () => backend.createFromVolume!(vol(size), source));
    let grown = size;
    const expand = await sample(N, () => backend.expand!(source, (grown += MiB), { mounted: true, device: null }));
    const copy = await sample(5, async (i) => {
      await sh('cp', ['--reflink=never', join(path, 'data'), join(pool.pool, `copy-${i}`)]);
      await sh('sync', ['-f', pool.pool]);
    }, 1);
    const copyP50 = [...copy].sort((a, b) => a - b)[Math.floor(copy.length / 2)]!;
    const restoreResult = summarize(GROUP, `restore from snapshot (${DATA_MIB} MiB of data)`, restore);
    return [
      summarize(GROUP, 'create (subvolume + qgroup limit)', create),
      summarize(GROUP, `snapshot (${DATA_MIB} MiB of data, read-only subvolume)`, snapshot),
      { ...restoreResult, ratio: { reference: 'full copy', value: restoreResult.p50Ms! / copyP50 } },
      summarize(GROUP, `clone (${DATA_MIB} MiB of data, writable snapshot)`, clone),
      summarize(GROUP, 'expand online (qgroup limit)', expand),
      summarize(GROUP, `full copy of ${DATA_MIB} MiB + sync (reference)`, copy, { note: 'what a copy-based restore costs' }),
    ];
  } finally {
    await pool.cleanup();
  }
}
