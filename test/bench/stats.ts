/** Shared shapes and arithmetic for `npm run bench` (benchmarks, not tests). */

/**
 * The environment raw reference commands run with: the one berth's OS module gives the same
 * commands (core/os/exec.ts), not the bench process' own (a UTF-8 locale, NODE_EXTRA_CA_CERTS...).
 */
export const OS_COMMAND_ENV: Readonly<Record<string, string>> = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

export interface BenchResult {
  /** Section in docs/benchmarks.md, e.g. "admin API", "docker", "csi", "exec". */
  readonly group: string;
  /** What was measured, e.g. "create (loop ext4)". */
  readonly name: string;
  /** Number of samples. */
  readonly n: number;
  readonly opsPerSec?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  /** Measured against a reference in the same run: value = this / reference (lower is better for latency). */
  readonly ratio?: { readonly reference: string; readonly value: number };
  readonly note?: string;
}

export function percentile(sortedMs: readonly number[], p: number): number {
  if (sortedMs.length === 0) return NaN;
  const idx = Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1));
  return sortedMs[idx]!;
}

/** Summarises latencies (ms) of sequential runs into a BenchResult. */
export function summarize(group: string, name: string, samplesMs: readonly number[], extra: Partial<BenchResult> = {}): BenchResult {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const total = samplesMs.reduce((a, b) => a + b, 0);
  return {
    group,
    name,
    n: samplesMs.length,
    opsPerSec: total > 0 ? (samplesMs.length * 1000) / total : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    ...extra,
  };
}

/** Times `fn` `n` times sequentially (after `warmup` untimed runs) and returns the samples in ms. */
export async function sample(n: number, fn: (i: number) => Promise<unknown>, warmup = 2): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    out.push(performance.now() - t0);
  }
  return out;
}
