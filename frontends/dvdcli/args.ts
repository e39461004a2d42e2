/**
 * dvdcli's command line (dvdcli-mesos.md §1), parsed by hand to keep cold start small.
 * `--volumedriver` and `--volumename` are accepted before or after the subcommand;
 * `--volumeopts` (mount, create) and `--explicitcreate` (mount) only where dvdcli has them.
 * Both `--flag=value` and `--flag value` work, as with pflag.
 *
 * Differences from dvdcli 0.2.x, on purpose: `--explicitCreate` (what mesos-module-dvdi
 * sends) is accepted as an alias; a --volumeopts element without '=' is a UsageError
 * instead of a Go panic; everything after the first '=' is the value (dvdcli drops the
 * part after a second '=').
 */
import { setOwn } from '../../core/user-input.js';
import { UsageError } from './errors.js';

export const COMMANDS = ['mount', 'unmount', 'path', 'create', 'remove', 'get', 'list', 'version'] as const;
export type Command = (typeof COMMANDS)[number];

export interface ParsedArgs {
  /** null: no subcommand (print usage). */
  readonly command: Command | null;
  readonly help: boolean;
  readonly volumeDriver: string;
  readonly volumeName: string;
  readonly volumeOpts: Readonly<Record<string, string>>;
  readonly explicitCreate: boolean;
}

const STRING_FLAGS = new Set(['volumedriver', 'volumename', 'volumeopts']);
const BOOL_FLAGS = new Set(['explicitcreate', 'explicitCreate', 'help']);
/** Flags only some subcommands define. */
const LOCAL_FLAGS: Readonly<Record<string, readonly Command[]>> = {
  volumeopts: ['mount', 'create'],
  explicitcreate: ['mount'],
  explicitCreate: ['mount'],
};

/** Go's strconv.ParseBool. */
function parseGoBool(v: string, flag: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new UsageError(`invalid argument ${JSON.stringify(v)} for "--${flag}" flag: expected true or false`);
}

/**
 * Adds one --volumeopts value: comma-separated key=value elements (empty elements are
 * skipped); duplicate keys: the last wins.
 */
export function addVolumeOpts(into: Record<string, string>, value: string): void {
  for (const element of value.split(',')) {
    if (element === '') continue;
    const eq = element.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid --volumeopts element ${JSON.stringify(element)}: expected key=value`);
    if (eq === 0) throw new UsageError(`invalid --volumeopts element ${JSON.stringify(element)}: the key is empty`);
    // setOwn: a key "__proto__" stays a key, sent on for the plugin to refuse by name.
    setOwn(into, element.slice(0, eq), element.slice(eq + 1));
  }
}

export function parseArgs(argv: readonly string[]): ParsedArgs {
  let command: Command | null = null;
  let help = false;
  let volumeDriver = '';
  let volumeName = '';
  let explicitCreate = false;
  const volumeOpts: Record<string, string> = {};
  const seenLocal: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '-h') {
      help = true;
      continue;
    }
    if (!token.startsWith('--') || token === '--') {
      if (command === null && token !== '--') {
        if (token === 'help') help = true;
        else if ((COMMANDS as readonly string[]).includes(token)) command = token as Command;
        else throw new UsageError(`unknown command ${JSON.stringify(token)} for "dvdcli"`);
        continue;
      }
      throw new UsageError(`unexpected argument ${JSON.stringify(token)}`);
    }
    const eq = token.indexOf('=');
    const name = token.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? null : token.slice(eq + 1);
    if (name in LOCAL_FLAGS) seenLocal.push(name);

    if (STRING_FLAGS.has(name)) {
      let value = inline;
      if (value === null) {
        value = argv[++i] ?? null;
        if (value === null) throw new UsageError(`flag needs an argument: --${name}`);
      }
      if (name === 'volumedriver') volumeDriver = value;
      else if (name === 'volumename') volumeName = value;
      else addVolumeOpts(volumeOpts, value);
    } else if (BOOL_FLAGS.has(name)) {
      let on = true;
      if (inline !== null) on = parseGoBool(inline, name);
      else if (argv[i + 1] !== undefined && /^(true|false)$/i.test(argv[i + 1]!)) on = parseGoBool(argv[++i]!, name);
      if (name === 'help') help = on;
      else explicitCreate = on;
    } else {
      throw new UsageError(`unknown flag: --${name}`);
    }
  }

  // Like cobra: a subcommand's own flags are unknown to the other subcommands.
  if (command !== null && !help) {
    for (const flag of seenLocal) {
      if (!LOCAL_FLAGS[flag]!.includes(command)) throw new UsageError(`unknown flag: --${flag} (only for ${LOCAL_FLAGS[flag]!.join(', ')})`);
    }
  }
  return { command, help, volumeDriver, volumeName, volumeOpts, explicitCreate };
}

export const USAGE = `dvdcli (berth) mounts and manages volumes through a Docker volume plugin.

Usage:
  dvdcli [command]

Available Commands:
  mount       Mount a volume (creating it first unless --explicitcreate)
  unmount     Unmount a volume
  path        Print the path of a volume
  create      Create a volume
  remove      Remove a volume
  get         Get a volume's name
  list        List volumes
  version     Print the version

Flags:
      --volumedriver string   Name of the Docker volume driver (plugin)
      --volumename string     Name of the volume
      --volumeopts value      key=value volume options, repeatable or comma-separated (mount, create)
      --explicitcreate        Fail instead of creating a missing volume (mount; --explicitCreate also accepted)
  -h, --help                  help for dvdcli
`;
