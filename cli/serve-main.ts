/**
 * The daemon side of `berth serve`: load the config once, start the daemon, stop it cleanly on
 * SIGTERM/SIGINT (exit 0). Any startup failure is one clear line on stderr and exit 1.
 * cli/commands/serve.ts loads this module only when the daemon starts: in dist/ it is a bundle
 * of its own (serve-main.mjs, with gRPC, SQLite, zod, prom-client behind it), so no client
 * command pays for the daemon's code.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_CONFIG_FILE, loadConfig, type ConfigFlags } from '../core/config-load.js';
import { isBerthError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { startDaemon, type RunningDaemon } from './daemon.js';
import { BERTH_VERSION } from './version.js';

/** Runs the daemon until SIGTERM/SIGINT; the exit code. `configArg`: --config, if given. */
export async function runServe(flags: ConfigFlags, configArg: string | undefined): Promise<number> {
  const warnings: string[] = [];
  let daemon: RunningDaemon;
  let log: Logger | undefined;
  try {
    const config = loadConfig({ file: configArg, env: process.env, flags, onWarning: (m) => warnings.push(m) });
    log = createLogger({ level: config.log.level });
    for (const w of warnings) log.warn(w);
    const explicit = configArg ?? (process.env.BERTH_CONFIG || undefined);
    const configFile = explicit !== undefined ? resolve(explicit) : existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : null;
    daemon = await startDaemon(config, { log, version: BERTH_VERSION, configFile, testHolds: process.env.BERTH_TEST_HOLDS || null });
  } catch (err) {
    const why = isBerthError(err) ? `${err.kind}: ${err.message}` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`berth serve: cannot start: ${why}\n`);
    // An expected refusal (a BerthError) is logged without a stack trace; anything else keeps it.
    log?.error(isBerthError(err) ? { kind: err.kind, field: err.field, reason: err.message } : { err }, 'startup failed');
    return 1;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'shutting down');
  try {
    await daemon.stop();
  } catch (err) {
    log.error({ err }, 'shutdown failed');
    return 1;
  }
  log.info('stopped');
  return 0;
}
