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
import { execFileSync } from 'node:child_process';
import { ensureTestImage } from './docker.js';
import { sweepStaleDrivers } from './docker-drivers.js';
import { useDockerEngine } from './dockerd.js';

function installed(command: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
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
  return () => engine.release();
}
