// A throwaway btrfs filesystem for tests: a sparse image in a mkdtemp root, attached to a
// loop device and mounted at <root>/pool. cleanup() unmounts, detaches and removes the root
// and is safe to call after a partial setup or twice (afterEach calls it even when a test failed).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface BtrfsPool {
  readonly root: string;
  /** Mount point of the btrfs filesystem: the backend's `pool` setting. */
  readonly pool: string;
  readonly device: string;
  cleanup(): Promise<void>;
}

/** mkfs.btrfs refuses below ~110 MiB; 256 MiB leaves room for limit tests. */
export async function makeBtrfsPool(opts: { sizeMiB?: number; prefix?: string } = {}): Promise<BtrfsPool> {
  const root = await mkdtemp(join(tmpdir(), opts.prefix ?? 'berth-btrfs-'));
  const image = join(root, 'pool.img');
  const pool = join(root, 'pool');
  let device: string | null = null;
  let mounted = false;
  const cleanup = async (): Promise<void> => {
    if (mounted) {
      await run('umount', [pool]).catch(() => run('umount', ['-l', pool]));
      mounted = false;
    }
    if (device) {
      await run('losetup', ['-d', device]).catch(() => undefined);
      device = null;
    }
    await rm(root, { recursive: true, force: true });
  };
  try {
    await writeFile(image, '');
    await truncate(image, (opts.sizeMiB ?? 256) * 1024 * 1024);
    await run('mkfs.btrfs', ['-q', image]);
    device = (await run('losetup', ['--find', '--show', image])).stdout.trim();
    await mkdir(pool);
    await run('mount', ['-t', 'btrfs', device, pool]);
    mounted = true;
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { root, pool, device: device!, cleanup };
}

/** Writes `mib` MiB of incompressible data to `path` with dd and fsync; resolves to dd's result. */
export async function writeMiB(path: string, mib: number): Promise<{ ok: boolean; stderr: string }> {
  try {
    const r = await run('dd', ['if=/dev/urandom', `of=${path}`, 'bs=1M', `count=${mib}`, 'conv=fsync']);
    return { ok: true, stderr: r.stderr };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? err) };
  }
}
