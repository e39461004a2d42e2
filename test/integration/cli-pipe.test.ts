// The CLI's output through real pipes, as scripts read it: `berth volume ls --output=json | jq`
// with 10,000 volumes (~3 MB, far past a pipe's 64 KiB buffer) must arrive whole, through a
// shell pipe and through $(...), and a reader that stops early must not turn into an error.
// The state root is a tmpfs of the test's own: 10,000 creates are 20,000 fsynced commits,
// which on a busy disk would take minutes and test nothing this suite is about.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BERTH_JS, startTestDaemon } from '../helpers/daemon.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const run = promisify(execFile);
const roots = useTmpRoots();
const VOLUMES = 10_000;
const CONCURRENCY = 32;

/** Runs a bash pipeline with pipefail, the BERTH_* variables of the test process left out. */
async function shell(script: string, env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('BERTH_')) clean[k] = v;
  return run('bash', ['-o', 'pipefail', '-c', script], { env: { ...clean, ...env }, maxBuffer: 64 << 20 });
}

describe('berth CLI output through pipes', () => {
  it(`volume ls with ${VOLUMES} volumes arrives whole through | jq and $(...), and a reader that stops early is not an error`, async () => {
    const root = roots.create('cli-pipe');
    const state = root.path('state');
    mkdirSync(state, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1g,mode=0700', 'berth-cli-pipe', state]);
    const d = await startTestDaemon(root);

    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < VOLUMES; i = next++) await d.client.createVolume({ name: `pipe-${String(i).padStart(5, '0')}` });
      }),
    );

    const env = { BERTH: `${process.execPath} ${BERTH_JS} --socket ${d.socket}` };
    // The reproduction: cut at 64 KiB, so jq failed on the half-written array.
    const piped = await shell('$BERTH volume ls --output=json | jq length', env);
    expect(piped.stdout).toBe(`${VOLUMES}\n`);
    expect(piped.stderr).toBe('');

    // Command substitution reads through a pipe too; the names prove the whole list arrived.
    const substituted = await shell('out=$($BERTH volume ls --output=json) && printf %s "$out" | jq -r ".[].name" | sort | sed -n "1p;\\$p"', env);
    expect(substituted.stdout).toBe('pipe-00000\npipe-09999\n');

    // The table: a header line and one line per volume.
    const table = await shell('$BERTH volume ls | wc -l', env);
    expect(table.stdout.trim()).toBe(String(VOLUMES + 1));

    // head closes the pipe after 100 bytes: berth stops quietly with exit 0 (pipefail would show
    // any other status), no EPIPE stack on stderr.
    const early = await shell('$BERTH volume ls --output=json | head -c 100 | wc -c', env);
    expect(early.stdout.trim()).toBe('100');
    expect(early.stderr).toBe('');
  });
});
