/**
 * What every client command shares: the global options, the admin client they imply and
 * the printer for --output. Commands get these from here instead of reading globals.
 */
import type { Argv, InferredOptionTypes, Options } from 'yargs';
import { invalidArgument } from '../core/errors.js';
import { setOwn } from '../core/user-input.js';
import { createAdminClient, type AdminClient } from '../frontends/admin/client.js';
import { createPrinter, type OutputFormat, type Printer } from './output.js';

export interface GlobalArgs {
  /** Admin socket; default $BERTH_SOCKET, then /run/berth/berth.sock. */
  readonly socket?: string;
  readonly output: OutputFormat;
}

/**
 * Declares a command's own options and groups them as "Options:", so its help lists them
 * before the global options (which the root groups as "Global options:").
 * @example builder: (y) => withOptions(y, { size: { type: 'string', describe: '...' } })
 */
export function withOptions<T, O extends Record<string, Options>>(y: Argv<T>, options: O): Argv<Omit<T, keyof O> & InferredOptionTypes<O>> {
  return y.options(options).group(Object.keys(options), 'Options:');
}

/**
 * A volume or snapshot reference positional. An empty one ('') is refused before any
 * request, naming it (the daemon would only see a route without a ref).
 */
export function refPositional<T, K extends string = 'ref'>(y: Argv<T>, name: K = 'ref' as K, describe = 'volume name or id'): Argv<T & { [k in K]: string }> {
  return y.positional(name, { type: 'string', demandOption: true, describe }).middleware((argv) => {
    if (String(argv[name] ?? '') === '') throw invalidArgument(name, 'must not be empty: give a name or an id');
  }) as unknown as Argv<T & { [k in K]: string }>;
}

export const clientFor = (argv: GlobalArgs): AdminClient =>
  createAdminClient({
    ...(argv.socket ? { socket: argv.socket } : {}),
    ...(process.env.BERTH_URL ? { url: process.env.BERTH_URL } : {}),
    ...(process.env.BERTH_TOKEN ? { token: process.env.BERTH_TOKEN } : {}),
    frontend: 'admin',
  });

/** The printer for --output, once its renderer is loaded. */
export const printerFor = (argv: GlobalArgs): Promise<Printer> => createPrinter(argv.output, (s) => process.stdout.write(s));

/** "k=v" strings (repeatable flags) into a map, naming the flag on a malformed pair. */
export function parsePairs(values: readonly (string | number)[] | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of values ?? []) {
    const s = String(raw);
    const eq = s.indexOf('=');
    if (eq <= 0) throw invalidArgument(field, `"${s}" must be key=value`);
    const key = s.slice(0, eq);
    // Own keys only: "toString" is not given twice, and "__proto__" stays a key the daemon refuses by name.
    if (Object.hasOwn(out, key)) throw invalidArgument(`${field}.${key}`, 'given twice');
    setOwn(out, key, s.slice(eq + 1));
  }
  return out;
}
