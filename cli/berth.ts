/**
 * `berth`: the daemon (`berth serve`) and the admin CLI in one executable. Global options:
 * --socket (or BERTH_SOCKET), --output table|json|yaml, --config. Every error ends here:
 * kind, message and field on stderr, non-zero exit (1 for errors from the daemon, 2 for usage).
 */
import yargs, { type Argv, type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isBerthError } from '../core/errors.js';
import type { GlobalArgs } from './context.js';
import { OUTPUT_FORMATS } from './output.js';
import { backendCommand } from './commands/backend.js';
import { flexvolumeCommand } from './commands/flexvolume.js';
import { serveCommand } from './commands/serve.js';
import { snapshotCommand } from './commands/snapshot.js';
import { statusCommand, versionCommand } from './commands/status.js';
import { volumeCommand } from './commands/volume.js';
import { BERTH_VERSION } from './version.js';

/** The command list: add a command module here (one line) to register it. */
const COMMANDS: ReadonlyArray<CommandModule<GlobalArgs, any>> = [
  serveCommand,
  volumeCommand,
  snapshotCommand,
  backendCommand,
  statusCommand,
  versionCommand,
  flexvolumeCommand,
];

/** A command-line mistake caught by yargs (exit 2), as opposed to an error from the daemon (exit 1). */
class UsageError extends Error {}

export async function main(args: string[]): Promise<number> {
  let cli: Argv<GlobalArgs> = (yargs(args)
    .scriptName('berth')
    .usage('$0 <command> [options]')
    .option('socket', { type: 'string', global: true, describe: 'admin API socket (default $BERTH_SOCKET or /run/berth/berth.sock)' })
    .option('output', { type: 'string', choices: OUTPUT_FORMATS, default: process.env.BERTH_OUTPUT ?? 'table', global: true, describe: 'output format' })
    .option('config', { type: 'string', global: true, describe: 'config file for serve (default /etc/berth/config.yaml)' })
    .strict()
    .demandCommand(1, 'name a command')
    .version(BERTH_VERSION)
    .help()
    .alias('help', 'h')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg);
    }) as unknown) as Argv<GlobalArgs>;
  for (const c of COMMANDS) cli = cli.command(c);
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`berth: ${err.message}\n(run with --help for usage)\n`);
      return 2;
    }
    process.stderr.write(`${formatError(err)}\n`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

/** "error: InvalidArgument: size: ... (field: size)" for BerthErrors; the message otherwise. */
export function formatError(err: unknown): string {
  if (isBerthError(err)) return `error: ${err.kind}: ${err.message}${err.field ? ` (field: ${err.field})` : ''}`;
  return `error: ${err instanceof Error ? err.message : String(err)}`;
}

// Exit explicitly: `serve` has closed everything by now, and a stray handle in a library
// must not keep a stopped daemon alive. stdout/stderr are synchronous for files and pipes on Linux.
process.exit(await main(hideBin(process.argv)));
