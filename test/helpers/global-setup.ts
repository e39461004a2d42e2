// Runs once before all suites, in the vitest main process.
// 1. Integration tests spawn the bundled daemon (dist/berth.js); `npm test` builds it
//    first, this makes `npx vitest` work on its own too.
// 2. The Docker suites need an engine: make sure one answers before the suites run (so none
//    of them spends its hook timeout waiting for it), registered as one of its test users
//    until the run ends (test/helpers/dockerd.ts: the last run out stops a dockerd a test
//    run started, never one it found), and build the test image once.
// 3. Remove plugin sockets and spec files that test runs which died left in dockerd's plugin
//    directories (test/helpers/docker-drivers.ts): dockerd would retry each of them for
//    ~15 s in every `docker volume ls`.
// 4. When the run includes a suite that needs the berth image (IMAGE_SUITES), start building
//    it in the background (test/helpers/image-build.ts): up to 15-20 minutes on a fresh
//    machine, overlapped with every other suite (the sequencer runs those suites last).
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { TestProject } from 'vitest/node';
import { REPO_ROOT } from './daemon.js';
import { ensureTestImage } from './docker.js';
import { sweepStaleDrivers } from './docker-drivers.js';
import { useDockerEngine } from './dockerd.js';
import { buildInBackground } from './image-build.js';
import { IMAGE_SUITES } from './sequencer.js';

function installed(command: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether this run includes one of `files` (paths relative to the repository). The CLI's
 * file filters are kept in an internal field of vitest 4 (filenamePattern); without it
 * every file counts, so a vitest that renames it builds too often, never too rarely.
 */
async function runIncludes(project: TestProject, files: readonly string[]): Promise<boolean> {
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const specs = await project.vitest.getRelevantTestSpecifications(filters);
  return specs.some((s) => files.includes(relative(REPO_ROOT, s.moduleId)));
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
  // Without dockerd installed (apt-get install docker.io; .ci/run does) the Docker suites fail
  // at their first docker call; everything else still runs.
  if (!installed('dockerd')) return undefined;
  const engine = await useDockerEngine();
  try {
    await ensureTestImage();
    const removed = await sweepStaleDrivers();
    if (removed.length) process.stderr.write(`removed stale test plugin files: ${removed.join(', ')}\n`);
  } catch (err) {
    await engine.release();
    throw err;
  }
  let build: { stop(): Promise<void> } | null = null;
  if (await runIncludes(project, IMAGE_SUITES)) {
    const statusFile = join(tmpdir(), `berth-image-build-status-${process.pid}.json`);
    project.provide('berthImageBuild', { statusFile });
    build = buildInBackground(statusFile);
  }
  return async () => {
    await build?.stop(); // done long before, unless the run ended early
    await engine.release();
  };
}
