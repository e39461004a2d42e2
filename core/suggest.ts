/**
 * "Did you mean ...?" for unknown keys (config keys, backend settings, volume options,
 * driver names): the known name closest to a typo, by edit distance. Pure.
 */

/**
 * The candidate with the smallest edit distance (case-insensitive), if it is close enough
 * to be a plausible typo; null otherwise.
 * @example closest('sockt', ['socket', 'tcp']) // 'socket'
 */
export function closest(input: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(input.toLowerCase(), c.toLowerCase());
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best !== null && bestDist <= Math.max(2, Math.floor(input.length / 3)) ? best : null;
}

/**
 * The suggestion as a message tail: `; did you mean "x"?`, or '' when nothing is close.
 * @example `unknown option "discrad"${didYouMean('discrad', ['discard'])}`
 */
export function didYouMean(input: string, candidates: readonly string[]): string {
  const guess = closest(input, candidates);
  return guess === null ? '' : `; did you mean "${guess}"?`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
