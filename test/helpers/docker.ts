/**
 * The docker CLI for the integration tests and the benchmarks, against the engine
 * test/helpers/dockerd.ts keeps up: runs it without a shell, builds the tiny busybox
 * image with `docker import` (no registry is reachable), and removes what a suite made
 * even when a test fails. Driver names and their fixed addresses: docker-drivers.ts.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DRIVER_POOLS, driverAddress } from './docker-drivers.js';

export const TEST_IMAGE = 'berth-test-busybox:1';

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
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}${explainDial(r.stderr)}`);
  return r.stdout.trim();
}

/**
 * What it means when dockerd could not dial a plugin ("dial unix <path>: connect: ..."):
 * either a test driver's berth is gone, or dockerd has a name cached at an address no test
 * driver has, which only something outside these tests can have served it at.
 * @example explainDial('dial unix /tmp/x.sock: connect: no such file or directory')
 */
export function explainDial(stderr: string): string {
  const m = /dial (unix|tcp) (\S+?): connect/.exec(stderr);
  if (!m) return '';
  const at = m[2]!;
  for (const pool of Object.values(DRIVER_POOLS)) {
    for (const name of pool.names) {
      const a = driverAddress(name);
      if (a.socket === at || a.tcp === at) return ` [${at} is the fixed address of test driver ${name}: its berth is not running]`;
    }
  }
  return ` [${at} is no test driver's address: dockerd keeps the address it first found a plugin name at until it restarts, ` +
    'and something outside test/helpers/docker-drivers.ts served this name there earlier; restart dockerd to forget it]';
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
 * Writes `<dir>/rootfs.tar`: busybox-static plus applet symlinks, the root filesystem of the
 * test image (Docker and Podman import the same tar). Returns the tar's path.
 * @example await docker(['import', await writeBusyboxTar(dir), 'x:1']);
 */
export async function writeBusyboxTar(dir: string): Promise<string> {
  const root = join(dir, 'rootfs');
  await mkdir(join(root, 'bin'), { recursive: true });
  for (const d of ['tmp', 'data', 'etc', 'proc', 'sys', 'dev']) await mkdir(join(root, d), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  for (const a of APPLETS) await symlink('busybox', join(root, 'bin', a));
  const tar = join(dir, 'rootfs.tar');
  await new Promise<void>((resolve, reject) => {
    execFile('tar', ['-C', root, '-cf', tar, '.'], (err) => (err ? reject(err) : resolve()));
  });
  return tar;
}

/** Builds TEST_IMAGE once: busybox-static plus applet symlinks, via `docker import`. */
export async function ensureTestImage(): Promise<string> {
  if ((await dockerRun(['image', 'inspect', TEST_IMAGE], 30_000)).code === 0) return TEST_IMAGE;
  const dir = await mkdtemp(join(tmpdir(), 'berth-image-'));
  try {
    await docker(['import', '--change', 'ENV PATH=/bin', await writeBusyboxTar(dir), TEST_IMAGE]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return TEST_IMAGE;
}

/** Unique names for containers and volumes in one suite. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Volume names Docker lists for this driver (filtered: never waits on other drivers). */
export async function listDriverVolumes(driver: string, timeoutMs?: number): Promise<string[]> {
  const out = await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`], timeoutMs);
  return out === '' ? [] : out.split('\n');
}

/** How long cleanupDocker may spend on docker calls, so the daemon stop and kernel sweep after it still run. */
const CLEANUP_BUDGET_MS = 90_000;

/**
 * Removes what a suite made: containers first (they hold mounts), then the driver's
 * volumes (while berth still answers). Collects failures and throws once at the end so one
 * failure does not skip the rest; every docker call has a deadline within one budget, so a
 * stuck engine cannot eat the hook's whole timeout and leave the daemon and mounts behind.
 *
 * Every volume is first registered with dockerd under this driver (`docker volume create -d`,
 * answered by the driver's Get alone), because `docker volume rm` of a name dockerd has
 * not seen (one a dvdcli call made) asks every driver dockerd ever met, ~15 s for each whose
 * berth is gone, holding the name's lock meanwhile: `docker volume ls` waits on it too.
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
  const deadline = Date.now() + CLEANUP_BUDGET_MS;
  const call = async (args: string[], ok: (r: DockerResult) => boolean = (r) => r.code === 0): Promise<DockerResult | null> => {
    const left = deadline - Date.now();
    if (left <= 0) {
      errors.push(`docker ${args.join(' ')}: skipped, cleanup budget of ${CLEANUP_BUDGET_MS} ms spent`);
      return null;
    }
    const r = await dockerRun(args, Math.min(left, 60_000));
    if (!ok(r)) errors.push(`docker ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
    return r;
  };
  for (const c of o.containers ?? []) await call(['rm', '-f', c], (r) => r.code === 0 || /No such container/i.test(r.stderr));
  if (!o.stopped) {
    const listed = await call(['volume', 'ls', '-q', '--filter', `driver=${o.driver}`]);
    const names = listed?.code === 0 && listed.stdout.trim() ? listed.stdout.trim().split('\n') : [];
    for (const v of names) {
      await call(['volume', 'create', '-d', o.driver, v]); // registers it; berth has it, so nothing is created
      await o.release?.(v).catch((e: Error) => errors.push(`release ${v}: ${e.message}`));
      await call(['volume', 'rm', '-f', v]);
    }
  }
  if (errors.length) throw new Error(`docker cleanup: ${errors.join('; ')}`);
}
