/**
 * The table renderer of `--output table` (the default): borderless cli-table3 tables, easy to
 * read and to grep. Loaded by output.ts only when a table is printed.
 */
import Table from 'cli-table3';
import type { Column } from './output.js';

/** Borderless tables: columns two spaces apart. */
const PLAIN = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
};

/**
 * The mark cli-table3 puts on a cut cell. Never shown (columns are as wide as their content),
 * but measured at every table: ASCII, because its default '…' costs string-width a compiled
 * emoji regexp, a tenth of a `berth` command's start.
 */
const TRUNCATE = '...';

/**
 * A list: a header line, then one line per row.
 * @example renderRows(volumes, VOLUME_COLUMNS)
 */
export function renderRows<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const t = new Table({ head: columns.map((c) => c.header), style: { head: [], border: [] }, chars: PLAIN, truncate: TRUNCATE });
  for (const r of rows) t.push(columns.map((c) => c.cell(r)));
  return t.toString();
}

/**
 * One object: a key column and a value column.
 * @example renderKeyValues(volume, VOLUME_FIELDS)
 */
export function renderKeyValues<T>(value: T, fields: ReadonlyArray<readonly [string, (v: T) => string]>): string {
  const t = new Table({ style: { head: [], border: [] }, chars: PLAIN, truncate: TRUNCATE });
  for (const [k, f] of fields) t.push({ [k]: f(value) });
  return t.toString();
}
