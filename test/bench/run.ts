// `npm run bench`: runs every test/bench/*.bench.ts (each exports `run(): Promise<BenchResult[]>`),
// prints the results and records them, with the machine and the date, in docs/benchmarks.md
// between the RESULTS markers. Some files only: `npm run bench -- exec csi`; their groups replace
// the same groups in docs/benchmarks.md, marked with their own date, and the rest stays as it was.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchResult } from './stats.js';

const here = new URL('.', import.meta.url).pathname;
const docPath = join(here, '../../docs/benchmarks.md');
const only = process.argv.slice(2);

const fmt = (x: number | undefined, digits = 2) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(digits));

function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  let os = 'Linux';
  try {
    os = readFileSync('/etc/os-release', 'utf8').match(/PRETTY_NAME="([^"]+)"/)?.[1] ?? os;
  } catch {}
  let docker = '';
  try {
    // The docker bench stops an engine it started itself: then there is no server to ask.
    docker = `, Docker ${execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}`;
  } catch {}
  return `${cpus().length} x ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${os}, kernel ${release()}, Node ${process.version}${docker}`;
}

/**
 * The 1-minute load average, sampled every 5 s while the benchmarks run: on a shared machine
 * it says how busy the run was (the ratios are same-run, the absolute numbers are not).
 */
const loads: number[] = [loadavg()[0]!];
setInterval(() => loads.push(loadavg()[0]!), 5_000).unref();

function load(): string {
  const mean = loads.reduce((a, b) => a + b, 0) / loads.length;
  return `1-minute load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} (mean ${mean.toFixed(1)}) during the run`;
}

function renderGroup(g: string, results: BenchResult[], remeasured?: string): string {
  const lines = [`### ${g}`, ''];
  if (remeasured) lines.push(remeasured, '');
  lines.push('| measurement | n | ops/s | p50 ms | p99 ms | ratio | note |', '|---|---:|---:|---:|---:|---|---|');
  for (const r of results.filter((x) => x.group === g)) {
    const ratio = r.ratio ? `${r.ratio.value.toFixed(2)}x ${r.ratio.reference}` : '';
    lines.push(`| ${r.name} | ${r.n} | ${fmt(r.opsPerSec, 1)} | ${fmt(r.p50Ms)} | ${fmt(r.p99Ms)} | ${ratio} | ${r.note ?? ''} |`);
  }
  lines.push('');
  return lines.join('\n');
}

/**
 * The recorded results with the groups of a partial run replaced (or added at the end), each
 * marked with its own date and machine; every other group keeps the full run's numbers.
 */
function merge(recorded: string, results: BenchResult[], started: Date): string {
  const [head, ...sections] = recorded.split(/\n(?=### )/);
  const titleOf = (section: string) => section.slice(4, section.indexOf('\n')).trim();
  const note = `Re-measured on its own at ${started.toISOString()} on ${machine()}; ${load()}; the other groups are from the run above.`;
  const fresh = new Map([...new Set(results.map((r) => r.group))].map((g) => [g, renderGroup(g, results, note)]));
  const merged = sections.map((sec) => fresh.get(titleOf(sec)) ?? sec);
  for (const [g, text] of fresh) if (!sections.some((sec) => titleOf(sec) === g)) merged.push(text);
  return [head, ...merged].join('\n').replace(/\n*$/, '\n\n');
}

function render(results: BenchResult[], started: Date): string {
  const groups = [...new Set(results.map((r) => r.group))];
  return [`Run: ${started.toISOString()} on ${machine()}; ${load()}.`, '', ...groups.map((g) => renderGroup(g, results))].join('\n');
}

const started = new Date();
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();
const results: BenchResult[] = [];
let failed = 0;
for (const f of files) {
  process.stderr.write(`bench: ${f}\n`);
  try {
    const mod = (await import(join(here, f))) as { run: () => Promise<BenchResult[]> };
    const rs = await mod.run();
    results.push(...rs);
    process.stdout.write(render(rs, started) + '\n');
  } catch (err) {
    failed++;
    process.stderr.write(`bench: ${f} failed: ${(err as Error).stack ?? err}\n`);
  }
}

const BEGIN = '<!-- RESULTS:BEGIN (written by npm run bench) -->';
const END = '<!-- RESULTS:END -->';
const doc = readFileSync(docPath, 'utf8');
const [head, rest] = doc.split(BEGIN);
const tail = rest?.split(END)[1] ?? '\n';
if (only.length === 0 && results.length > 0) {
  writeFileSync(docPath, `${head}${BEGIN}\n${render(results, started)}\n${END}${tail}`);
  process.stderr.write(`bench: results written to docs/benchmarks.md\n`);
} else if (results.length > 0 && rest !== undefined) {
  const recorded = rest.split(END)[0]!.replace(/^\n/, '');
  writeFileSync(docPath, `${head}${BEGIN}\n${merge(recorded, results, started)}${END}${tail}`);
  process.stderr.write(`bench: the groups measured replace theirs in docs/benchmarks.md\n`);
}
process.exit(failed ? 1 : 0);
