/**
 * Building the berth test image (scripts/image/build.sh --offline: debootstrap + docker
 * import bases, cached in the local image store) once per content: the tag is a hash of
 * every file the Dockerfile reads, so a later run with the same sources reuses the image
 * without a build. The suite side is berth-image.ts.
 *
 * Off the critical path: a build takes a minute or two with warm caches but 15-20 minutes on
 * a fresh machine (debootstrap, npm ci with a C++ compile). So the global setup of a run that
 * includes an IMAGE_SUITES file (sequencer.ts) starts it in the background (buildInBackground), and the
 * sequencer (test/helpers/sequencer.ts) runs those suites last: the build overlaps every
 * other suite, and the suite only waits for what is left of it.
 *
 * One machine-wide lock, IMAGE_LOCK (machine-lock.ts), whatever the checkout: a build, and
 * the removal of other trees' test tags after it, hold it exclusively; a suite holds it
 * shared from finding its image until it no longer needs it, so no run removes an image
 * another run is about to use, and two runs never build at once.
 *
 * @example const build = buildInBackground(statusFile); ...; await build.stop();
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO_ROOT } from './daemon.js';
import { dockerRun } from './docker.js';
import { acquireLock } from './machine-lock.js';

export const IMAGE_REPO = 'berth-test/berth';
/** A fresh machine under load: debootstrap, npm ci with a compile, two apt installs. */
export const BUILD_TIMEOUT_MS = 40 * 60_000;
export const IMAGE_LOCK = 'berth-image';

/** What the Dockerfile COPYs (see .dockerignore), and the files that say how. */
const INPUTS = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build.mjs', 'scripts/image/build.sh', 'binding.gyp'];
const TREES = ['backends', 'cli', 'core', 'frontends', 'native'];

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (!/\.(test|case)\.ts$/.test(e.name)) out.push(p);
  }
  return out;
}

/** A hash of the image's inputs: the tag of the test image. */
export async function berthImageKey(): Promise<string> {
  const files = [...INPUTS.map((f) => join(REPO_ROOT, f))];
  for (const t of TREES) files.push(...(await filesUnder(join(REPO_ROOT, t))));
  const h = createHash('sha256');
  for (const f of files.sort()) {
    h.update(relative(REPO_ROOT, f)).update('\0').update(await readFile(f)).update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

export const imageExists = async (image: string): Promise<boolean> => (await dockerRun(['image', 'inspect', image], 30_000)).code === 0;

async function tail(file: string, lines: number): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-lines).join('\n');
}

export interface Build {
  readonly done: Promise<void>;
  /** Stops the build if it still runs (its whole process group: bash, docker, debootstrap). */
  stop(): Promise<void>;
}

/**
 * Runs scripts/image/build.sh for `image` in its own process group, niced (the parts that
 * run here: debootstrap, the Node base), its output in a log file kept only on failure.
 */
function runBuildScript(image: string, key: string): Build {
  const log = join(tmpdir(), `berth-image-build-${key}.log`);
  let stopping = false;
  let pid: number | undefined;
  const done = (async () => {
    const fh = await open(log, 'w');
    const started = Date.now();
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('nice', ['-n', '10', 'bash', join(REPO_ROOT, 'scripts/image/build.sh'), '--offline', '--tag', image],
        { detached: true, stdio: ['ignore', fh.fd, fh.fd] });
      pid = child.pid;
      const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGTERM'), BUILD_TIMEOUT_MS);
      child.once('error', (err) => (clearTimeout(timer), reject(err)));
      child.once('exit', (c) => (clearTimeout(timer), resolve(c)));
    }).finally(() => fh.close());
    if (code !== 0) {
      const why = stopping ? 'stopped' : Date.now() - started >= BUILD_TIMEOUT_MS ? `timed out after ${BUILD_TIMEOUT_MS} ms` : `exit ${code}`;
      throw new Error(`scripts/image/build.sh --offline --tag ${image} failed (${why}); last lines of ${log}:\n${await tail(log, 30)}`);
    }
    await rm(log, { force: true });
    process.stderr.write(`built ${image} in ${Math.round((Date.now() - started) / 1000)} s\n`);
  })();
  return {
    done,
    async stop() {
      stopping = true;
      try {
        if (pid) process.kill(-pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await done.catch(() => {});
    },
  };
}

/**
 * Builds `image` unless it exists, then removes the tags of other trees; all under the
 * exclusive lock.
 * @example await buildUnderLock('berth-test/berth:0123', '0123').done;
 */
export function buildUnderLock(image: string, key: string): Build {
  let build: Build | null = null;
  let stopped = false;
  const done = (async () => {
    const lock = await acquireLock(IMAGE_LOCK, BUILD_TIMEOUT_MS);
    try {
      if (stopped || (await imageExists(image))) return;
      build = runBuildScript(image, key);
      await build.done;
      // Images of older trees: their layers are shared, their tags only take space. Nobody
      // uses one now: a suite holds the lock shared while it does.
      const tags = (await dockerRun(['images', IMAGE_REPO, '--format', '{{.Tag}}'])).stdout.split('\n').filter(Boolean);
      for (const t of tags) if (`${IMAGE_REPO}:${t}` !== image) await dockerRun(['rmi', `${IMAGE_REPO}:${t}`]);
    } finally {
      await lock.release();
    }
  })();
  return {
    done,
    async stop() {
      stopped = true;
      await build?.stop();
      await done.catch(() => {});
    },
  };
}

/**
 * For the global setup: builds this tree's image in the background (nothing to do when it
 * exists), and writes how a failed build ended to `statusFile` for ensureBerthImage().
 * @example const build = buildInBackground(statusFile); ...; await build.stop(); // teardown
 */
export function buildInBackground(statusFile: string): { stop(): Promise<void> } {
  let build: Build | null = null;
  let stopped = false;
  const done = (async () => {
    const key = await berthImageKey();
    if (stopped) return;
    build = buildUnderLock(`${IMAGE_REPO}:${key}`, key);
    await build.done.catch((err: Error) => writeFile(statusFile, JSON.stringify({ key, error: err.message })));
  })();
  return {
    async stop() {
      stopped = true;
      await build?.stop();
      await done.catch(() => {});
      await rm(statusFile, { force: true });
    },
  };
}

