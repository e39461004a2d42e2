// The plain table layout (table.ts) prints exactly what cli-table3 prints for tables of
// printable ASCII, and leaves every other table to cli-table3.
import { describe, expect, it } from 'vitest';
import { plainTable, renderKeyValues, renderRows } from './table.js';

import Table from 'cli-table3';
const CHARS = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
};
const reference = (head: string[], body: string[][]) => {
  const t = new Table({ head, style: { head: [], border: [] }, chars: CHARS, truncate: '...' });
  for (const r of body) t.push(r);
  return t.toString();
};
const referenceKv = (pairs: [string, string][]) => {
  const t = new Table({ style: { head: [], border: [] }, chars: CHARS, truncate: '...' });
  for (const [k, v] of pairs) t.push({ [k]: v });
  return t.toString();
};

/** A deterministic generator (no Math.random: a failure must reproduce). */
function* cells(seed: number): Generator<string> {
  let x = seed;
  const ascii = ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~';
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const len = x % 23;
    let s = '';
    for (let i = 0; i < len; i++) s += ascii[(x >> (i % 16)) % ascii.length];
    yield s;
  }
}

describe('table layout', () => {
  it('matches cli-table3 on printable ASCII: lists of any shape, empty cells, no rows', async () => {
    const gen = cells(7);
    const next = () => gen.next().value as string;
    for (let cols = 1; cols <= 7; cols++) {
      for (const nrows of [0, 1, 2, 5, 30]) {
        const head = Array.from({ length: cols }, () => next().toUpperCase() || 'H');
        const body = Array.from({ length: nrows }, () => Array.from({ length: cols }, next));
        const columns = head.map((h, i) => ({ header: h, cell: (r: string[]) => r[i]! }));
        expect(await renderRows(body, columns)).toBe(reference(head, body));
      }
    }
  });

  it('matches cli-table3 on key/value tables', async () => {
    const gen = cells(11);
    const next = () => gen.next().value as string;
    for (const n of [1, 3, 15]) {
      const pairs = Array.from({ length: n }, () => [next() || 'k', next()] as [string, string]);
      const fields = pairs.map(([k], i) => [k, (p: [string, string][]) => p[i]![1]] as const);
      expect(await renderKeyValues(pairs, fields)).toBe(referenceKv(pairs));
    }
  });

  it('leaves wide, combining and control characters to cli-table3', async () => {
    expect(plainTable([['NAME'], ['données']])).toBeNull();
    expect(plainTable([['NAME'], ['卷']])).toBeNull();
    expect(plainTable([['NAME'], ['a\nb']])).toBeNull();
    expect(plainTable([['NAME'], ['\u001b[31mred']])).toBeNull();
    const head = ['NAME', 'LABELS'];
    const body = [['pg', 'team=データ'], ['web', 'x']];
    const columns = head.map((h, i) => ({ header: h, cell: (r: string[]) => r[i]! }));
    // Display widths: the wide characters take two columns each, as cli-table3 measures them
    // (by .length, 'team=データ' would be 8 wide, not 11).
    expect(await renderRows(body, columns)).toBe(reference(head, body));
    expect((await renderRows(body, columns)).split('\n')[0]).toBe(` ${'NAME'.padEnd(4)} ${'  '} ${'LABELS'.padEnd(11)} `);
  });
});
