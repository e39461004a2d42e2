/**
 * Debian's Podman (4.3) for the integration tests, isolated in a test root: its own
 * containers.conf (CONTAINERS_CONF replaces the system files), --root, --runroot and
 * --tmpdir, the busybox test image imported into that root, and `--network none` for every
 * container. Podman finds volume plugins only through containers.conf
 * ([engine.volume_plugins] name = "socket"), so the suite names berth's Docker socket there.
 *
 * Two things Podman writes outside --root on this machine are removed again when it made
 * them: /var/lib/containers/cache (the blob info cache `podman import` fills) and the empty
 * /run/runc (runc's state root); only by exact file name and rmdir, never recursively.
 * A machine-wide lock ("podman") is held while such a Podman lives, so two test runs never
 * decide about those paths at once (one removing what the other is using).
 * default_ulimits = []: the packaged default asks for limits this machine cannot grant
 * without CAP_SYS_RESOURCE.
 *
 * @example
 *   const pm = await createPodman(root, { plugins: { 'berth-pm': daemon.dockerSocket } });
 *   await pm.run(['run', '--rm', '-v', 'v:/data', pm.image, 'sh', '-c', 'echo hi > /data/f']);
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeBusyboxTar } from './docker.js';
import { acquireLock } from './machine-lock.js';
import type { TmpRoot } from './tmp-root.js';

export interface PodmanResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Podman {
  /** The busybox image inside this Podman's root. */
  readonly image: string;
  /** Runs `podman <global flags> <args>`; never throws on a non-zero exit. */
  exec(args: readonly string[], timeoutMs?: number): Promise<PodmanResult>;
  /** Like exec, but throws with stderr on failure and returns trimmed stdout. */
  run(args: readonly string[], timeoutMs?: number): Promise<string>;
}

const OUTSIDE = {
  cacheFile: '/var/lib/containers/cache/blob-info-cache-v1.boltdb',
  cacheDirs: ['/var/lib/containers/cache', '/var/lib/containers'],
  runc: '/run/runc',
};

/** Builds an isolated Podman in `root` and registers its cleanup on the root (containers, then volumes). */
export async function createPodman(root: TmpRoot, o: { plugins: Readonly<Record<string, string>> }): Promise<Podman> {
  const dir = root.path('podman');
  await mkdir(dir, { recursive: true });
  const conf = join(dir, 'containers.conf');
  const plugins = Object.entries(o.plugins).map(([name, socket]) => `${JSON.stringify(name)} = ${JSON.stringify(socket)}`).join('\n');
  await writeFile(conf, [
    '[containers]', 'default_ulimits = []', 'log_driver = "k8s-file"', '',
    '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', `events_logfile_path = ${JSON.stringify(join(dir, 'events.log'))}`, '',
    '[engine.volume_plugins]', plugins, '',
  ].join('\n'));
  // Released last (registered first): after the cleanup below has run.
  const lock = await acquireLock('podman', 100_000);
  root.defer(lock.release);
  const madeOutside = { cache: !existsSync(OUTSIDE.cacheDirs[1]!), runc: !existsSync(OUTSIDE.runc) };
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--tmpdir', join(dir, 'tmp')];
  const env = { ...process.env, CONTAINERS_CONF: conf };
  for (const k of Object.keys(env)) if (k.startsWith('BERTH_')) delete (env as Record<string, unknown>)[k];

  const exec = (args: readonly string[], timeoutMs = 120_000): Promise<PodmanResult> =>
    new Promise((resolve) => {
      execFile('podman', [...global, ...args], { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === -1 ? err.message : '') });
      });
    });
  const run = async (args: readonly string[], timeoutMs?: number): Promise<string> => {
    const r = await exec(args, timeoutMs);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout.trim();
  };

  root.defer(async () => {
    const errors: string[] = [];
    const rmAll = await exec(['rm', '--all', '--force', '--time', '0']);
    if (rmAll.code !== 0) errors.push(`podman rm -af: ${rmAll.stderr.trim()}`);
    // Plugin volumes: Podman calls the plugin's Remove, so this runs while berth still answers.
    const vols = await exec(['volume', 'rm', '--all', '--force']);
    if (vols.code !== 0) errors.push(`podman volume rm -af: ${vols.stderr.trim()}`);
    if (madeOutside.cache) {
      await unlink(OUTSIDE.cacheFile).catch(() => {});
      for (const d of OUTSIDE.cacheDirs) await rmdir(d).catch(() => {});
    }
    if (madeOutside.runc) await rmdir(OUTSIDE.runc).catch(() => {});
    if (errors.length) throw new Error(errors.join('; '));
  });

  const image = 'localhost/berth-test-busybox:1';
  const tarDir = join(dir, 'image');
  await mkdir(tarDir);
  await run(['import', '--quiet', '--change', 'ENV PATH=/bin', await writeBusyboxTar(tarDir), image]);
  return { image, exec, run };
}
