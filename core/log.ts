/**
 * Logger interface for the whole daemon: pino's shape, so `createLogger` is pino and
 * tests may pass `createSilentLogger()`. No instance is exported: the composition
 * root (cli/daemon.ts) builds one and passes it down.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = Pick<PinoLogger, 'info' | 'warn' | 'error' | 'debug' | 'child' | 'isLevelEnabled'>;

export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', base: { svc: 'berth' } },
    opts.destination ? (opts.destination as unknown as pino.DestinationStream) : pino.destination(2),
  );
}

export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
