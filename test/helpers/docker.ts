/**
 * A real Docker engine for the integration tests and the benchmark: starts dockerd
 * when `docker info` fails (no bridge, no iptables: nothing here needs networking; every
 * container runs with `--network none`, see DOCKERD_START_TIMEOUT_MS),
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

export const DOCKERD_LOG = '/var/log/berth-test-dockerd.log';
const DOCKERD_PIDFILE = '/var/run/docker.pid';
/**
 * How long a starting dockerd may take. Usually 1-3 s, but dockerd 20.10 removes every
 * network sandbox a previous, killed dockerd left behind one by one (~0.12 s each) before
 * it answers: a thousand of them is over two minutes. Containers here run with
 * `--network none` (no sandbox to leave) and the test run stops the engine it started,
 * but an engine killed elsewhere can still leave them.
 */
const DOCKERD_START_TIMEOUT_MS = 15 * 60_000;

/** The pid of a running dockerd from its pid file, or 0. */
async function dockerdPid(): Promise<number> {
  const pid = Number((await readFile(DOCKERD_PIDFILE, 'utf8').catch(() => '')).trim());
  return pid > 0 && alive(pid) ? pid : 0;
}

async function logTail(lines: number): Promise<string> {
  const text = await readFile(DOCKERD_LOG, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Waits for `docker info`, saying every 15 s what dockerd is doing (its log's last line). */
async function waitForEngine(what: string): Promise<void> {
  const started = Date.now();
  let said = started;
  await waitFor(`${what} (log: ${DOCKERD_LOG})`, async () => {
    if (await engineUp()) return true;
    if (Date.now() - said >= 15_000) {
      said = Date.now();
      const last = (await logTail(1)).slice(0, 200);
      process.stderr.write(`waiting for dockerd (${Math.round((said - started) / 1000)} s): ${last}\n`);
    }
    return false;
  }, DOCKERD_START_TIMEOUT_MS).catch(async (err: Error) => {
    throw new Error(`${err.message}\nlast lines of ${DOCKERD_LOG}:\n${await logTail(8)}`);
  });
}

/**
 * Makes sure a Docker engine answers; returns true when this call started it (the caller
 * then stops it with stopDocker). Suites run in parallel processes: a lock file (O_EXCL)
 * lets one of them start dockerd while the others only wait for it, and a dockerd that is
 * already running but not answering yet is waited for, never started twice.
 */
export async function ensureDocker(): Promise<boolean> {
  if (await engineUp()) return false;
  const lock = join(tmpdir(), 'berth-dockerd-start.lock');
  let mine = false;
  try {
    await (await open(lock, 'wx')).close();
    mine = true;
  } catch {
    // another suite is starting it
  }
  if (!mine) {
    await waitForEngine('dockerd started by another suite');
    return false;
  }
  try {
    if (await engineUp()) return false;
    if (await dockerdPid()) {
      await waitForEngine('the running dockerd to answer `docker info`');
      return false;
    }
    const logFile = await open(DOCKERD_LOG, 'a');
    const t0 = Date.now();
    const child = spawn('dockerd', ['--iptables=false', '--bridge=none'], {
      detached: true,
      stdio: ['ignore', logFile.fd, logFile.fd],
    });
    child.unref();
    await logFile.close();
    await waitForEngine('dockerd to answer `docker info`');
    process.stderr.write(`started dockerd (pid ${child.pid}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    return true;
  } finally {
    await unlink(lock).catch(() => {});
  }
}

/**
 * Stops the dockerd that ensureDocker started: SIGTERM and wait for it to exit. A clean
 * stop matters: a killed dockerd makes the next one start slowly (see above).
 */
export async function stopDocker(timeoutMs = 120_000): Promise<void> {
  const pid = await dockerdPid();
  if (!pid) return;
  process.kill(pid, 'SIGTERM');
  await waitFor(`dockerd (pid ${pid}) to exit after SIGTERM`, async () => !alive(pid), timeoutMs);
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

/** dockerd reads plugin spec files only from here (and /usr/lib/docker/plugins). */
export const SPEC_DIR = '/etc/docker/plugins';

export const specFile = (driver: string): string => join(SPEC_DIR, `${driver}.spec`);

/**
 * A driver name for a berth that Docker reaches over TCP through a spec file, with the one
 * address that name is always served on.
 *
 * Why a pool of its own and a fixed port: dockerd caches a legacy plugin by name together
 * with the address it first found it at (moby pkg/plugins keeps the activated plugin, and
 * the volume store keeps its client), for the life of the dockerd. A name first seen on a
 * unix socket would never be looked for over TCP, and a name first seen at port P is
 * dialled at P forever. So TCP drivers never share names with the socket pool, and each
 * name in this pool is always announced as tcp://127.0.0.1:<port> with the same port
 * (below the ephemeral range, so a freePort() elsewhere never takes it). One name keeps
 * the number of names dockerd remembers (and waits on) small; holders queue for it.
 */
export async function acquireTcpDriverName(timeoutMs = 180_000): Promise<{ driver: string; tcp: string; release(): Promise<void> }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const held = await acquireDriverName('berth-tcp', 1);
      return { ...held, tcp: '127.0.0.1:29470' };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
