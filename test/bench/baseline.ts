/**
 * An earlier build of berth for a benchmark to run beside this one: the commit is exported
 * with `git archive` into the benchmark's tmp root (never committed, no worktree of the repo),
 * given this checkout's node_modules through a symlink and built with its own
 * scripts/build.mjs. The root's cleanup removes it.
 *
 *   const base = await buildBaseline(root, 'c3e69e8');
 *   await startTestDaemon(root, { subdir: 'baseline', berthJs: base.berthJs });
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/daemon.js';
import type { TmpRoot } from '../helpers/tmp-root.js';

const run = promisify(execFile);

export interface Baseline {
  /** Full commit hash. */
  readonly commit: string;
  /** Its first line, for the record. */
  readonly subject: string;
  /** Its dist/berth.js (TestDaemonOptions.berthJs). */
  readonly berthJs: string;
}

/**
 * Builds `rev` under `<root>/baseline`. The checkout's node_modules must serve the older
 * package.json: true while the commits in between only add dependencies.
 */
export async function buildBaseline(root: TmpRoot, rev: string): Promise<Baseline> {
  const git = (...args: string[]) => run('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' }).then((r) => r.stdout.trim());
  let commit: string;
  try {
    commit = await git('rev-parse', '--verify', '--quiet', `${rev}^{commit}`);
  } catch {
    throw new Error(`baseline commit ${rev} is not in this clone (a shallow clone?): fetch it, or name another with BERTH_BENCH_BASELINE`);
  }
  const subject = await git('log', '-1', '--format=%s', commit);
  const dir = root.path('baseline');
  mkdirSync(dir, { recursive: true });
  const tar = root.path('baseline.tar');
  await git('archive', '--format=tar', '-o', tar, commit);
  await run('tar', ['-xf', tar, '-C', dir]);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  await run(process.execPath, ['scripts/build.mjs'], { cwd: dir });
  const berthJs = join(dir, 'dist', 'berth.js');
  if (!existsSync(berthJs)) throw new Error(`the baseline build of ${commit} made no dist/berth.js`);
  return { commit, subject, berthJs };
}
