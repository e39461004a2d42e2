// Runs once before all suites. Integration tests spawn the bundled daemon (dist/berth.js);
// `npm test` builds it first, this makes `npx vitest` work on its own too.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
}
