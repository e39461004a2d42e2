/**
 * A real Docker engine for the integration tests and the benchmark: starts dockerd
 * when `docker info` fails (no bridge, no iptables: nothing here needs networking),
 * builds a tiny busybox image with `docker import` (no registry is reachable), and
 * wraps the docker CLI. Every suite holds its own driver name (acquireDriverName) and
 * cleans up its containers, volumes and plugin socket even when a test fails.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, symlink, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TEST_IMAGE = 'berth-test-busybox:1';
export const PLUGIN_DIR = '/run/docker/plugins';

const APPLETS = ['sh', 'cat', 'echo', 'df', 'ls', 'sleep', 'mkdir', 'rm', 'touch', 'stat', 'test', 'true', 'false',
  'grep', 'head', 'wc', 'dd', 'sync', 'mount', 'find', 'cp', 'mv', 'kill', 'sed', 'printf', 'du'];

export interface DockerResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the docker CLI; never throws on a non-zero exit (see `docker()` for that). */
export function dockerRun(args: readonly string[], timeoutMs = 120_000): Promise<DockerResult> {
  return new Promise((resolve) => {
    execFile('docker', [...args], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === -1 ? err.message : '') });
    });
  });
}

/** Runs the docker CLI and returns trimmed stdout; throws with stderr on failure. */
export async function docker(args: readonly string[], timeoutMs?: number): Promise<string> {
  const r = await dockerRun(args, timeoutMs);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

async function engineUp(): Promise<boolean> {
  return (await dockerRun(['info', '--format', '{{.ServerVersion}}'], 10_000)).code === 0;
}

/** Polls `check` until it returns true or the deadline passes. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Makes sure a Docker engine answers. Suites run in parallel processes: a lock file
 * (O_EXCL) lets one of them start dockerd while the others only wait for it.
 */
export async function ensureDocker(): Promise<void> {
  if (await engineUp()) return;
  const lock = join(tmpdir(), 'berth-dockerd-start.lock');
  let mine = false;
  try {
    await (await open(lock, 'wx')).close();
    mine = true;
  } catch {
    // another suite is starting it
  }
  if (mine) {
    try {
      if (!(await engineUp())) {
        const logFile = await open('/var/log/berth-test-dockerd.log', 'a');
        const child = spawn('dockerd', ['--iptables=false', '--bridge=none'], {
          detached: true,
          stdio: ['ignore', logFile.fd, logFile.fd],
        });
        child.unref();
        await logFile.close();
      }
      await waitFor('dockerd to answer `docker info` (log: /var/log/berth-test-dockerd.log)', engineUp, 90_000);
    } finally {
      await unlink(lock).catch(() => {});
    }
  } else {
    await waitFor('dockerd started by another suite', engineUp, 120_000);
  }
}

/** Builds TEST_IMAGE once: busybox-static plus applet symlinks, via `docker import`. */
export async function ensureTestImage(): Promise<string> {
  if ((await dockerRun(['image', 'inspect', TEST_IMAGE], 30_000)).code === 0) return TEST_IMAGE;
  const dir = await mkdtemp(join(tmpdir(), 'berth-image-'));
  try {
    const root = join(dir, 'rootfs');
    await mkdir(join(root, 'bin'), { recursive: true });
    for (const d of ['tmp', 'data', 'etc', 'proc', 'sys', 'dev']) await mkdir(join(root, d), { recursive: true });
    await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
    for (const a of APPLETS) await symlink('busybox', join(root, 'bin', a));
    const tar = join(dir, 'rootfs.tar');
    await new Promise<void>((resolve, reject) => {
      execFile('tar', ['-C', root, '-cf', tar, '.'], (err) => (err ? reject(err) : resolve()));
    });
    await docker(['import', '--change', 'ENV PATH=/bin', tar, TEST_IMAGE]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return TEST_IMAGE;
}

/**
 * A driver name no other running suite holds, from a small fixed pool (<prefix>0..N-1).
 *
 * Why a pool and not a random name: Docker 20.10 keeps every legacy volume driver it has
 * ever talked to in memory until dockerd restarts, and once that driver's socket is gone
 * every unfiltered `docker volume ls` and every lookup of an unknown volume name waits
 * ~15 s per such driver. Reusing a few names bounds that cost; random names grow it by
 * one driver per test. The holder's pid is written to a lock file, so a lock left by a
 * dead test process is taken over.
 */
export async function acquireDriverName(prefix = 'berth-it', pool = 4): Promise<{ driver: string; release(): Promise<void> }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    for (let i = 0; i < pool; i++) {
      const driver = `${prefix}${i}`;
      const lock = join(tmpdir(), `berth-docker-driver-${driver}.lock`);
      try {
        const fh = await open(lock, 'wx');
        await fh.writeFile(String(process.pid));
        await fh.close();
        return { driver, release: () => unlink(lock).catch(() => {}) };
      } catch {
        const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
        if (!holder || !alive(holder)) await unlink(lock).catch(() => {});
      }
    }
  }
  throw new Error(`all ${pool} test driver names ${prefix}0..${pool - 1} are held by running processes`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const pluginSocket = (driver: string): string => join(PLUGIN_DIR, `${driver}.sock`);

/** Unique names for containers and volumes in one suite. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Volume names Docker lists for this driver (filtered: never waits on other drivers). */
export async function listDriverVolumes(driver: string): Promise<string[]> {
  const out = await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`]);
  return out === '' ? [] : out.split('\n');
}

/**
 * Removes what a suite made: containers first (they hold mounts), then the driver's
 * volumes (while berth still answers), and last the plugin socket if the daemon left one.
 * Collects failures and throws once at the end so one failure does not skip the rest.
 */
export async function cleanupDocker(o: {
  driver: string;
  containers?: readonly string[];
  /** berth is not running: skip the volumes (Docker would wait on the plugin). */
  stopped?: boolean;
  /** Called per volume before `docker volume rm -f`, e.g. to drop references other consumers hold. */
  release?: (volume: string) => Promise<unknown>;
}): Promise<void> {
  const errors: string[] = [];
  for (const c of o.containers ?? []) {
    const r = await dockerRun(['rm', '-f', c]);
    if (r.code !== 0 && !/No such container/i.test(r.stderr)) errors.push(`rm -f ${c}: ${r.stderr.trim()}`);
  }
  if (!o.stopped) {
    const names = await listDriverVolumes(o.driver).catch((e: Error) => {
      errors.push(e.message);
      return [];
    });
    for (const v of names) {
      await o.release?.(v).catch((e: Error) => errors.push(`release ${v}: ${e.message}`));
      const r = await dockerRun(['volume', 'rm', '-f', v]);
      if (r.code !== 0) errors.push(`volume rm -f ${v}: ${r.stderr.trim()}`);
    }
  }
  await unlink(pluginSocket(o.driver)).catch(() => {});
  if (errors.length) throw new Error(`docker cleanup: ${errors.join('; ')}`);
}
