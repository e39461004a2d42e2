// `npm run bench`: runs every test/bench/*.bench.ts (each exports `run(): Promise<BenchResult[]>`),
// prints the results and records them, with the machine and the date, in docs/benchmarks.md
// between the RESULTS markers. A single group: `npm run bench -- csi`.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
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

function render(results: BenchResult[], started: Date): string {
  const lines = [`Run: ${started.toISOString()} on ${machine()}.`, ''];
  const groups = [...new Set(results.map((r) => r.group))];
  for (const g of groups) {
    lines.push(`### ${g}`, '', '| measurement | n | ops/s | p50 ms | p99 ms | ratio | note |', '|---|---:|---:|---:|---:|---|---|');
    for (const r of results.filter((x) => x.group === g)) {
      const ratio = r.ratio ? `${r.ratio.value.toFixed(2)}x ${r.ratio.reference}` : '';
      lines.push(`| ${r.name} | ${r.n} | ${fmt(r.opsPerSec, 1)} | ${fmt(r.p50Ms)} | ${fmt(r.p99Ms)} | ${ratio} | ${r.note ?? ''} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
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
}
process.exit(failed ? 1 : 0);
