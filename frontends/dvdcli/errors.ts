/**
 * dvdcli-compatible stderr lines and exit codes (dvdcli-mesos.md §1.2). dvdcli logs with
 * logrus' text formatter to stderr: `time="<RFC3339>" level=<l> msg=<m> <k>=<v> ` plus a
 * newline (note the trailing space); a value is bare when it matches [A-Za-z0-9.-]* and
 * quoted otherwise. Every failure exits 1. Two deliberate differences from dvdcli 0.2.x,
 * both documented in docs/flexvolume-dvdcli.md: a usage error (unknown flag or command)
 * exits 1 instead of 0, and a --volumeopts element without '=' is an error, not a panic.
 */
import { PluginCallError, PluginUnavailableError } from './plugin-client.js';
import { directOutput } from '../process-exit.js';

export type Level = 'info' | 'warning' | 'error';

/** A bad command line: printed as cobra does ("Error: ..." + hint), exit 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure dvdcli reports as one log line, with the fields it adds to it. */
export class CommandFailure extends Error {
  constructor(message: string, readonly level: Level, readonly fields: Readonly<Record<string, string>> = {}) {
    super(message);
    this.name = 'CommandFailure';
  }
}

/** Go's time.RFC3339 in local time: 2006-01-02T15:04:05Z07:00. */
export function rfc3339(d: Date): string {
  const pad = (n: number) => String(Math.trunc(Math.abs(n))).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${pad(off / 60)}:${pad(off % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone}`;
}

const logValue = (v: string) => (/^[A-Za-z0-9.-]*$/.test(v) ? v : JSON.stringify(v));

/** One logrus text line, newline included. */
export function logLine(level: Level, msg: string, fields: Readonly<Record<string, string>> = {}, now = new Date()): string {
  let line = `time=${logValue(rfc3339(now))} level=${level} msg=${logValue(msg)} `;
  for (const [k, v] of Object.entries(fields)) line += `${k}=${logValue(v)} `;
  return `${line}\n`;
}

export interface Logger {
  (level: Level, msg: string, fields?: Readonly<Record<string, string>>): void;
}

/** This process's stdout and stderr, written at once (../process-exit.ts). */
export const output = directOutput();

export const stderrLogger: Logger = (level, msg, fields) => {
  output.out(2, logLine(level, msg, fields));
};

/** Prints `err` the way dvdcli would and returns the exit code. */
export function reportFailure(err: unknown, log: Logger): number {
  if (err instanceof UsageError) {
    output.out(2, `Error: ${err.message}\nRun 'dvdcli --help' for usage.\n`);
    return 1;
  }
  if (err instanceof CommandFailure) log(err.level, err.message, err.fields);
  else if (err instanceof PluginUnavailableError) log('info', err.message);
  else if (err instanceof PluginCallError) log('error', err.message);
  else log('error', err instanceof Error ? err.message : String(err));
  return 1;
}
