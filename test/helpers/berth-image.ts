/**
 * The berth image for the suites that need it (the Docker managed plugin), built with the
 * repository's own script (scripts/image/build.sh --offline: debootstrap + docker import
 * bases, cached in the local image store) once per content: the tag is a hash of every file
 * the Dockerfile reads, so a later run with the same sources reuses the image without a
 * build, and suites running at once share one build (a lock file, as for dockerd).
 *
 * @example const image = await ensureBerthImage(); // "berth-test/berth:<hash>"
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readdir, readFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO_ROOT } from './daemon.js';
import { dockerRun, waitFor } from './docker.js';

/** What the Dockerfile COPYs (see .dockerignore), and the two files that say how. */
const INPUTS = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build.mjs', 'scripts/image/build.sh'];
const TREES = ['backends', 'cli', 'core', 'frontends'];

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

const exists = async (image: string) => (await dockerRun(['image', 'inspect', image], 30_000)).code === 0;

/** Builds (or finds) the image of this tree; returns its name. Takes minutes the first time on a machine. */
export async function ensureBerthImage(): Promise<string> {
  const image = `berth-test/berth:${await berthImageKey()}`;
  if (await exists(image)) return image;
  const lock = join(tmpdir(), 'berth-test-image-build.lock');
  let mine = false;
  try {
    const fh = await open(lock, 'wx');
    await fh.writeFile(String(process.pid));
    await fh.close();
    mine = true;
  } catch {
    // another suite is building it
  }
  if (!mine) {
    await waitFor(`the berth image ${image} (built by another suite)`, async () => (await exists(image)) || !(await readFile(lock, 'utf8').catch(() => '')), 30 * 60_000);
    if (await exists(image)) return image;
    return ensureBerthImage();
  }
  try {
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      execFile('bash', [join(REPO_ROOT, 'scripts/image/build.sh'), '--offline', '--tag', image],
        { timeout: 30 * 60_000, maxBuffer: 64 << 20 }, (err, _stdout, stderr) => {
          if (err) reject(new Error(`scripts/image/build.sh failed: ${err.message}\n${String(stderr).slice(-4000)}`));
          else resolve();
        });
    });
    process.stderr.write(`built ${image} in ${Math.round((Date.now() - started) / 1000)} s\n`);
    // Images of older trees: their layers are shared, their tags only take space.
    const tags = (await dockerRun(['images', 'berth-test/berth', '--format', '{{.Tag}}'])).stdout.split('\n').filter(Boolean);
    for (const t of tags) if (`berth-test/berth:${t}` !== image) await dockerRun(['rmi', `berth-test/berth:${t}`]);
    return image;
  } finally {
    await unlink(lock).catch(() => {});
  }
}
