/**
 * `berth`: the daemon (`berth serve`) and the admin CLI in one executable. Global options:
 * --socket (or BERTH_SOCKET), --output table|json|yaml (or BERTH_OUTPUT). Every error ends here:
 * kind, message and field on stderr, non-zero exit (1 for errors from the daemon, 2 for usage).
 */
import yargs, { type Argv, type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isBerthError } from '../core/errors.js';
import { exitWhenFlushed, ignoreClosedReaders } from '../frontends/process-exit.js';
import type { GlobalArgs } from './context.js';
import { OUTPUT_FORMATS } from './output.js';
import { backendCommand } from './commands/backend.js';
import { flexvolumeCommand } from './commands/flexvolume.js';
import { serveCommand } from './commands/serve.js';
import { snapshotCommand } from './commands/snapshot.js';
import { statusCommand, versionCommand } from './commands/status.js';
import { volumeCommand } from './commands/volume.js';
import { nodeCommand } from './commands/node.js';
import { fenceAgentCommand } from './commands/fence-agent.js';
import { BERTH_VERSION } from './version.js';

/** The command list: add a command module here (one line) to register it. */
const COMMANDS: ReadonlyArray<CommandModule<GlobalArgs, any>> = [
  serveCommand,
  volumeCommand,
  snapshotCommand,
  backendCommand,
  nodeCommand,
  fenceAgentCommand,
  statusCommand,
  versionCommand,
  flexvolumeCommand,
];

const ROOT_EPILOG = `Examples:
  berth status                          # up? where does it listen?
  berth volume create pgdata --backend loop --size 64MiB --fs ext4
  berth volume mount pgdata             # prints the path
  berth volume ls --output json
  berth volume unmount pgdata && berth volume rm pgdata

Sizes: 512MiB, 1GiB, 10G (10^9), 64M or bytes. Exit 1: refused by the daemon, 2: usage.`;

/** A command-line mistake caught by yargs (exit 2), as opposed to an error from the daemon (exit 1). */
class UsageError extends Error {
  constructor(message: string, readonly usage: string | null) {
    super(message);
  }
}

/**
 * yargs' failure text made specific: a missing positional is named ("missing <name>") and the
 * failing command's usage line is shown, so the user sees what to type without --help.
 */
export function explainUsageError(msg: string, usages: ReadonlyArray<readonly [string, string]>): UsageError {
  const usage = usages[0]?.[0].replace(/^\$0/, 'berth') ?? null;
  const notEnough = /^Not enough non-option arguments: got (\d+)/.exec(msg);
  if (notEnough && usage) {
    const positionals = [...usage.matchAll(/<([^>]+)>/g)].map((m) => m[1]);
    const missing = positionals.slice(Number(notEnough[1]));
    return new UsageError(`missing ${(missing.length ? missing : positionals).map((p) => `<${p}>`).join(' ')}`, usage);
  }
  const suggestion = /^Did you mean (.+)\?$/.exec(msg);
  if (suggestion) return new UsageError(`unknown command: did you mean "${suggestion[1]}"?`, usage);
  return new UsageError(msg, usage && usage !== 'berth <command> [options]' ? usage : null);
}

export async function main(args: string[]): Promise<number> {
  const envOutput = process.env.BERTH_OUTPUT;
  if (envOutput !== undefined && !(OUTPUT_FORMATS as readonly string[]).includes(envOutput)) {
    process.stderr.write(`berth: BERTH_OUTPUT=${JSON.stringify(envOutput)} is not an output format: use ${OUTPUT_FORMATS.join(', ')}\n`);
    return 2;
  }
  let cli: Argv<GlobalArgs> = (yargs(args)
    .scriptName('berth')
    .usage('$0 <command> [options]')
    .option('socket', { type: 'string', global: true, describe: 'admin API socket (default $BERTH_SOCKET or /run/berth/berth.sock)' })
    .option('output', { type: 'string', choices: OUTPUT_FORMATS, default: process.env.BERTH_OUTPUT ?? 'table', global: true, describe: 'output format (default $BERTH_OUTPUT or table)' })
    .strict()
    // --help and --version print and return here instead of calling process.exit() at once,
    // which could cut the text on a full pipe: every exit goes through exitWhenFlushed.
    .exitProcess(false)
    .recommendCommands()
    .demandCommand(1, 'name a command')
    .version(BERTH_VERSION)
    .help()
    .alias('help', 'h')
    // Shown after each command's own options (commands group theirs as "Options:", see context.ts).
    .group(['socket', 'output', 'help', 'version'], 'Global options:')
    .epilog(ROOT_EPILOG)
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((msg, err, usage) => {
      if (err) throw err;
      throw explainUsageError(msg, (usage as unknown as { getUsage(): Array<[string, string]> }).getUsage());
    }) as unknown) as Argv<GlobalArgs>;
  for (const c of COMMANDS) cli = cli.command(c);
  skipHelpRendering(cli);
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof UsageError) {
      const hint = err.usage ? `usage: ${err.usage}  (${err.usage.replace(/ [<[].*$/, '')} --help for every option)` : '(run berth --help for usage)';
      process.stderr.write(`berth: ${err.message}\n${hint}\n`);
      return 2;
    }
    process.stderr.write(`${formatError(err)}\n`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

/**
 * yargs renders a command's whole help text before it runs the handler, so that a handler
 * could show it later (showHelp). berth's handlers never do (.fail() prints one line and the
 * usage), and that rendering (cliui, word wrapping, Unicode widths) was a third of every
 * client command's start. --help itself renders it as before. Reaches into yargs' internal
 * methods: if they change, the override is skipped and commands are only slower.
 */
function skipHelpRendering(cli: Argv<GlobalArgs>): void {
  const internals = (cli as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.();
  const usage = internals?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined;
}

/** "error: InvalidArgument: size: ... (field: size)" for BerthErrors; the message otherwise. */
export function formatError(err: unknown): string {
  if (isBerthError(err)) return `error: ${err.kind}: ${err.message}${err.field ? ` (field: ${err.field})` : ''}`;
  return `error: ${err instanceof Error ? err.message : String(err)}`;
}

// Exit explicitly: `serve` has closed everything by now, and a stray handle in a library
// must not keep a stopped daemon alive. But not before stdout and stderr are flushed: a
// write to a full pipe finishes asynchronously, and exiting earlier truncates the output.
ignoreClosedReaders();
void main(hideBin(process.argv)).then((code) => exitWhenFlushed(code));
