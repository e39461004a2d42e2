// Runs once before all suites, in the vitest main process.
// 1. Integration tests spawn the bundled daemon (dist/berth.js); `npm test` builds it
//    first, this makes `npx vitest` work on its own too.
// 2. The Docker suites need an engine: start it here, once, before the suites run in
//    parallel (so none of them spends its hook timeout waiting for it), build the test
//    image once, and stop the engine after the last suite if this run started it.
import { execFileSync } from 'node:child_process';
import { ensureDocker, ensureTestImage, stopDocker } from './docker.js';

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
  const started = await ensureDocker();
  await ensureTestImage();
  return started ? () => stopDocker() : undefined;
}
