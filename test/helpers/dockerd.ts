/**
 * The Docker engine every test run on this machine shares. dockerd is started when none
 * answers (no bridge, no iptables: every test container runs with `--network none`) and
 * stopped again only when a test run started it AND no other test run still uses it:
 * - each run holds a shared lock ("dockerd-users") while it uses the engine;
 * - starting and stopping happen under an exclusive lock ("dockerd-start"), and stopping
 *   only when the users lock can be taken exclusively (nobody else holds it shared);
 * - the pid of a dockerd a test run started is kept in TEST_RUN_DIR/dockerd-started-by-tests,
 *   so a dockerd someone else started (a developer's, the CI host's) is never stopped, and
 *   the last of several parallel runs (several checkouts) stops the one a test started.
 *
 *   const engine = await useDockerEngine();   // test/helpers/global-setup.ts
 *   ...
 *   await engine.release();
 */
import { spawn } from 'node:child_process';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dockerRun, waitFor } from './docker.js';
import { acquireLock, TEST_RUN_DIR, tryLock, type Lock } from './machine-lock.js';

export const DOCKERD_LOG = '/var/log/berth-test-dockerd.log';
const DOCKERD_PIDFILE = '/var/run/docker.pid';
/** The pid file of the containerd that dockerd starts and, when it names a live process, adopts. */
const CONTAINERD_PIDFILE = '/var/run/docker/containerd/containerd.pid';
const STARTED_BY_TESTS = join(TEST_RUN_DIR, 'dockerd-started-by-tests');
/**
 * How long a starting dockerd may take. Usually 1-3 s, but dockerd 20.10 removes every
 * network sandbox a previous, killed dockerd left behind one by one (~0.12 s each) before
 * it answers: a thousand of them is over two minutes. Containers here run with
 * `--network none` (no sandbox to leave) and the test run stops the engine it started,
 * but an engine killed elsewhere can still leave them.
 */
const DOCKERD_START_TIMEOUT_MS = 15 * 60_000;

export interface DockerEngine {
  /** This call started dockerd. */
  readonly started: boolean;
  /** Stops using the engine; the last user stops a dockerd a test run started. Safe to call twice. */
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function engineUp(): Promise<boolean> {
  return (await dockerRun(['info', '--format', '{{.ServerVersion}}'], 10_000)).code === 0;
}

/**
 * The pid that `pidFile` names when that process is still a `program` (its /proc comm), or 0.
 * A pid file can outlive its program: a session's processes are killed when it ends, and the
 * kernel may give that pid to another program before the next test run (CI once waited 15 min
 * for a "running dockerd" that was some other process).
 */
export async function livePid(pidFile: string, program: string): Promise<number> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!(Number.isInteger(pid) && pid > 0 && alive(pid))) return 0;
  const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
  return comm === program ? pid : 0;
}

/**
 * Removes `pidFile` when it names no live `program`. dockerd refuses to start while its pid
 * file names any live process, and adopts the live process its containerd pid file names as
 * its containerd (and kills it when it does not answer): a stale file must go first.
 */
export async function removeStalePidFile(pidFile: string, program: string): Promise<boolean> {
  const present = await readFile(pidFile, 'utf8').then(() => true, () => false);
  if (!present || (await livePid(pidFile, program))) return false;
  await rm(pidFile, { force: true });
  return true;
}

/** The pid of a running dockerd from its pid file, or 0. */
async function dockerdPid(): Promise<number> {
  return livePid(DOCKERD_PIDFILE, 'dockerd');
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

/** Starts dockerd, records that a test run did, and waits until it answers. */
async function startEngine(): Promise<void> {
  for (const [file, program] of [[DOCKERD_PIDFILE, 'dockerd'], [CONTAINERD_PIDFILE, 'containerd']] as const) {
    if (await removeStalePidFile(file, program)) process.stderr.write(`removed ${file}: it named no running ${program}\n`);
  }
  const logFile = await open(DOCKERD_LOG, 'a');
  const t0 = Date.now();
  const child = spawn('dockerd', ['--iptables=false', '--bridge=none'], { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] });
  child.unref();
  await logFile.close();
  await writeFile(STARTED_BY_TESTS, `${child.pid}\n`);
  await waitForEngine('dockerd to answer `docker info`');
  process.stderr.write(`started dockerd (pid ${child.pid}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

/** SIGTERM and wait: a clean stop matters, a killed dockerd makes the next one start slowly (see above). */
async function stopEngine(pid: number, timeoutMs = 120_000): Promise<void> {
  process.kill(pid, 'SIGTERM');
  await waitFor(`dockerd (pid ${pid}) to exit after SIGTERM`, async () => !alive(pid), timeoutMs);
}

/**
 * Makes sure a Docker engine answers and registers this process as one of its test users
 * until release(). Test runs in parallel (suites, checkouts) never start dockerd twice, and
 * none stops it under another.
 * @example const engine = await useDockerEngine(); try { ... } finally { await engine.release(); }
 */
export async function useDockerEngine(): Promise<DockerEngine> {
  const gate = await acquireLock('dockerd-start', DOCKERD_START_TIMEOUT_MS);
  let user: Lock | undefined;
  let started = false;
  try {
    // Only a stopping run holds this exclusively, and only while it holds the gate.
    user = await acquireLock('dockerd-users', 60_000, { shared: true });
    if (!(await engineUp())) {
      if (await dockerdPid()) {
        await waitForEngine('the running dockerd to answer `docker info`');
      } else {
        await startEngine();
        started = true;
      }
    }
  } catch (err) {
    await user?.release();
    throw err;
  } finally {
    await gate.release();
  }
  const me = user;
  let released: Promise<void> | null = null;
  return {
    started,
    release: () => (released ??= stopIfLast(() => me.release())),
  };
}

async function stopIfLast(unregister: () => Promise<void>): Promise<void> {
  await unregister();
  const gate = await acquireLock('dockerd-start', DOCKERD_START_TIMEOUT_MS);
  try {
    const alone = await tryLock('dockerd-users');
    if (!alone) return; // another test run still uses the engine
    try {
      const recorded = Number((await readFile(STARTED_BY_TESTS, 'utf8').catch(() => '')).trim());
      const pid = await dockerdPid();
      if (recorded > 0 && recorded === pid) await stopEngine(pid);
      if (recorded > 0 && (recorded === pid || !alive(recorded))) await rm(STARTED_BY_TESTS, { force: true });
    } finally {
      await alone.release();
    }
  } finally {
    await gate.release();
  }
}
