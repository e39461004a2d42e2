/**
 * What every client command shares: the global options, the admin client they imply and
 * the printer for --output. Commands get these from here instead of reading globals.
 */
import { invalidArgument } from '../core/errors.js';
import { createAdminClient, type AdminClient } from '../frontends/admin/client.js';
import { createPrinter, type OutputFormat, type Printer } from './output.js';

export interface GlobalArgs {
  /** Admin socket; default $BERTH_SOCKET, then /run/berth/berth.sock. */
  readonly socket?: string;
  readonly output: OutputFormat;
  readonly config?: string;
}

export const clientFor = (argv: GlobalArgs): AdminClient =>
  createAdminClient({
    ...(argv.socket ? { socket: argv.socket } : {}),
    ...(process.env.BERTH_URL ? { url: process.env.BERTH_URL } : {}),
    ...(process.env.BERTH_TOKEN ? { token: process.env.BERTH_TOKEN } : {}),
    frontend: 'admin',
  });

export const printerFor = (argv: GlobalArgs): Printer => createPrinter(argv.output, (s) => process.stdout.write(s));

/** "k=v" strings (repeatable flags) into a map, naming the flag on a malformed pair. */
export function parsePairs(values: readonly (string | number)[] | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of values ?? []) {
    const s = String(raw);
    const eq = s.indexOf('=');
    if (eq <= 0) throw invalidArgument(field, `"${s}" must be key=value`);
    const key = s.slice(0, eq);
    if (key in out) throw invalidArgument(`${field}.${key}`, 'given twice');
    out[key] = s.slice(eq + 1);
  }
  return out;
}
