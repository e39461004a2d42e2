/**
 * Logger interface for the whole daemon: pino's shape, so `createLogger` is pino and
 * tests may pass `createSilentLogger()`. No instance is exported: the composition
 * root (cli/daemon.ts) builds one and passes it down.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = Pick<PinoLogger, 'info' | 'warn' | 'error' | 'debug' | 'child' | 'isLevelEnabled'>;

/** Where afterTurn hands its lines: sonic-boom's write. */
export interface LineSink {
  write(text: string): unknown;
}

/**
 * A pino destination that holds the lines logged during one turn of the event loop and
 * hands them to `sink` together, in order, at the end of that turn (setImmediate), and at
 * process exit (`onExit`, default process 'exit'; it also runs on an uncaught exception).
 *
 * Why: a call's lines (the core's "op" line, the frontend's call line) are made as it
 * finishes, in front of its answer. Written there, they are system calls between the
 * answer and the caller. Node's HTTP/2 flushes a gRPC answer in the same phase of the
 * turn, before any setImmediate callback, so a CSI answer is on the socket before its lines
 * are written, and its trailers (the end of the call, a turn later) after them: a caller
 * that has its answer finds its lines in the log. The price: a process killed with -9
 * loses the lines of the turn it was in.
 * @example const log = pino({}, afterTurn(pino.destination({ dest: 2, sync: true })));
 */
export function afterTurn(sink: LineSink, onExit: (flush: () => void) => void = (f) => process.once('exit', f)): pino.DestinationStream {
  let held = '';
  const flush = () => {
    if (!held) return;
    const text = held;
    held = '';
    sink.write(text);
  };
  onExit(flush);
  return {
    write(line: string) {
      if (!held) setImmediate(flush);
      held += line;
    },
  };
}

/**
 * The daemon's log: JSON lines on stderr (fd 2), a turn's lines written together after it
 * (afterTurn) with one write(2) on the calling thread (sonic-boom `sync`), as Go's and C
 * daemons log (kubelet, containerd, dockerd). Not sonic-boom's default, which hands every
 * write to libuv's thread pool: a pool trip and two thread wake-ups per line, two lines a
 * call, where a write to a file, journald's socket or a container runtime's pipe costs a
 * few microseconds. A reader that stops reading (a full pipe) holds the daemon up, as it
 * holds those daemons up: a lost log is the worse failure.
 */
export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', base: { svc: 'berth' } },
    opts.destination ? (opts.destination as unknown as pino.DestinationStream) : afterTurn(pino.destination({ dest: 2, sync: true })),
  );
}

export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
