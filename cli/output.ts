/**
 * Renders CLI results as a table (./table.ts), JSON or YAML. Commands hand
 * over the plain API objects plus a table layout; json/yaml always print the whole object
 * unchanged so scripts get every field. Each renderer's library is loaded only for its own
 * format: a `berth` command starts a process, and loading all three was a tenth of its start.
 */
import type { Attachment, MountRef, Volume } from '../core/types.js';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** One column of a list table: header and how to get the cell from a row. */
export interface Column<T> {
  readonly header: string;
  readonly cell: (row: T) => string;
}

export interface Printer {
  /** A list: a table with one row per item, or the array as JSON/YAML. */
  list<T>(rows: readonly T[], columns: readonly Column<T>[]): Promise<void>;
  /** One object: a two-column key/value table, or the object as JSON/YAML. */
  item<T>(value: T, fields: ReadonlyArray<readonly [string, (v: T) => string]>): Promise<void>;
  /** A bare value (a path, a version): the text itself in table mode. */
  value(value: unknown, text: string): Promise<void>;
}

/**
 * Builds a printer for one format writing to `out`, once that format's renderer is loaded.
 * @example await (await createPrinter('table', (s) => process.stdout.write(s))).list(volumes, VOLUME_COLUMNS)
 */
export async function createPrinter(format: OutputFormat, out: (text: string) => void): Promise<Printer> {
  if (format === 'table') {
    const { renderKeyValues, renderRows } = await import('./table.js');
    return {
      list: async (rows, columns) => out(`${await renderRows(rows, columns)}\n`),
      item: async (value, fields) => out(`${await renderKeyValues(value, fields)}\n`),
      value: async (_value, text) => out(`${text}\n`),
    };
  }
  // yaml is CommonJS: its module.exports is `default`, under Node and in esbuild's chunks alike.
  const render = format === 'json' ? (v: unknown) => `${JSON.stringify(v, null, 2)}\n` : ((await import('yaml')) as unknown as { default: typeof import('yaml') }).default.stringify;
  const structured = async (v: unknown) => out(render(v));
  return { list: structured, item: structured, value: structured };
}

/** Bytes as the largest exact binary unit ("64MiB"), so the text can be pasted back into --size. */
export function formatBytes(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, mult] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)}MiB`;
  return `${bytes}B`;
}

/** Bytes for reading, not pasting: "78.2GiB", "512MiB", "900B" (one decimal when not exact). */
export function humanBytes(bytes: number): string {
  for (const [unit, mult] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= mult) return bytes % mult === 0 ? `${bytes / mult}${unit}` : `${(bytes / mult).toFixed(1)}${unit}`;
  }
  return `${bytes}B`;
}

const kv = (m: Readonly<Record<string, string>>) => Object.entries(m).map(([k, v]) => `${k}=${v}`).join(',') || '-';

export const VOLUME_COLUMNS: readonly Column<Volume>[] = [
  { header: 'NAME', cell: (v) => v.name },
  { header: 'BACKEND', cell: (v) => v.backend },
  { header: 'SIZE', cell: (v) => (v.sizeBytes ? formatBytes(v.sizeBytes) : '-') },
  { header: 'FS', cell: (v) => (v.volumeMode === 'block' ? 'block' : (v.fsType ?? '-')) },
  { header: 'STATUS', cell: (v) => v.status },
  { header: 'MOUNTS', cell: (v) => String(v.mounts.length) },
  { header: 'ID', cell: (v) => v.id },
];

const attachmentText = (a: Attachment) => `${a.node}${a.device ? ` ${a.device}` : ''}${a.readOnly ? ' ro' : ''}${a.implicit ? ' (implicit)' : ''}`;
const mountText = (m: MountRef) => `${m.consumer} [${m.frontend}]${m.target ? ` -> ${m.target}` : ''}${m.readOnly ? ' ro' : ''}`;

export const VOLUME_FIELDS: ReadonlyArray<readonly [string, (v: Volume) => string]> = [
  ['Name', (v) => v.name],
  ['ID', (v) => v.id],
  ['Backend', (v) => v.backend],
  ['Size', (v) => (v.sizeBytes ? `${formatBytes(v.sizeBytes)} (${v.sizeBytes} bytes)` : 'unlimited')],
  ['Filesystem', (v) => v.fsType ?? '-'],
  ['Mode', (v) => v.volumeMode],
  ['Access mode', (v) => v.accessMode],
  ['Status', (v) => v.status],
  ['Labels', (v) => kv(v.labels)],
  ['Options', (v) => kv(v.options)],
  ['Source', (v) => (v.source ? `${v.source.kind} ${v.source.id}` : '-')],
  ['Created', (v) => v.createdAt],
  ['Path', (v) => v.path ?? '-'],
  ['Attachments', (v) => v.attachments.map(attachmentText).join('\n') || '-'],
  ['Mounts', (v) => v.mounts.map(mountText).join('\n') || '-'],
];
