/**
 * The table renderer of `--output table` (the default): borderless tables, columns two spaces
 * apart, easy to read and to grep. Loaded by output.ts only when a table is printed.
 *
 * Every cell of printable ASCII (the usual case: names, ids, sizes, states) is laid out here,
 * each column as wide as its longest cell: exactly what cli-table3 prints for such a table
 * (table.test.ts compares them). Anything else (wide or combining characters in a label, a
 * control character) goes to cli-table3, loaded only then, which measures display widths
 * (string-width). Loading and running cli-table3 was a tenth of a `berth` command's start.
 */
import type { Column } from './output.js';

/** Borderless tables: columns two spaces apart. */
const PLAIN = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
};

/**
 * The mark cli-table3 puts on a cut cell. Never shown (columns are as wide as their content),
 * but measured at every table: ASCII, because its default '…' costs string-width a compiled
 * emoji regexp.
 */
const TRUNCATE = '...';

/** cli-table3, for the tables the plain layout cannot measure (from node_modules: not bundled). */
async function cliTable3(): Promise<typeof import('cli-table3')> {
  // CommonJS: its module.exports is `default`.
  return ((await import('cli-table3')) as unknown as { default: typeof import('cli-table3') }).default;
}

const PRINTABLE_ASCII = /^[\x20-\x7E]*$/;

/** The plain layout of `rows` (header first), or null when a cell is not printable ASCII. */
export function plainTable(rows: readonly (readonly string[])[]): string | null {
  if (!rows.every((r) => r.every((c) => PRINTABLE_ASCII.test(c)))) return null;
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => ` ${c.padEnd(widths[i]!)} `).join(PLAIN.middle)).join('\n');
}

/**
 * A list: a header line, then one line per row.
 * @example await renderRows(volumes, VOLUME_COLUMNS)
 */
export async function renderRows<T>(rows: readonly T[], columns: readonly Column<T>[]): Promise<string> {
  const head = columns.map((c) => c.header);
  const body = rows.map((r) => columns.map((c) => c.cell(r)));
  const plain = plainTable([head, ...body]);
  if (plain !== null) return plain;
  const Table = await cliTable3();
  const t = new Table({ head, style: { head: [], border: [] }, chars: PLAIN, truncate: TRUNCATE });
  for (const cells of body) t.push(cells);
  return t.toString();
}

/**
 * One object: a key column and a value column.
 * @example await renderKeyValues(volume, VOLUME_FIELDS)
 */
export async function renderKeyValues<T>(value: T, fields: ReadonlyArray<readonly [string, (v: T) => string]>): Promise<string> {
  const pairs = fields.map(([k, f]) => [k, f(value)] as const);
  const plain = plainTable(pairs);
  if (plain !== null) return plain;
  const Table = await cliTable3();
  const t = new Table({ style: { head: [], border: [] }, chars: PLAIN, truncate: TRUNCATE });
  for (const [k, v] of pairs) t.push({ [k]: v });
  return t.toString();
}
