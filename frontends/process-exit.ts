/**
 * How the short-lived executables (`berth` client commands, dvdcli, the FlexVolume driver)
 * end: only once everything they wrote to stdout and stderr has reached the OS.
 *
 * A write to a pipe that is full (64 KiB unread: `berth volume ls --output=json | jq`,
 * `$(...)`) is queued and finished later by the event loop; process.exit() before that
 * drops the rest, so a script would read a truncated reply. Every exit path goes through
 * exitWhenFlushed instead.
 */

import { writeSync } from 'node:fs';

/** The streams a process writes its reply to: process.stdout/stderr, or stand-ins in tests. */
export type OutputStream = Pick<NodeJS.WritableStream, 'write' | 'on'> & { readonly writable?: boolean; readonly destroyed?: boolean };

/**
 * A reader that went away (`berth volume ls | head -1`) closes the pipe: the next write fails
 * with EPIPE. That is not an error of the command, and without a listener Node would turn it
 * into an uncaught exception with a stack trace: ignore it, the write's callback still runs.
 * Call once at start-up, before anything is written.
 * @example ignoreClosedReaders(); process.stdout.write(text); exitWhenFlushed(0);
 */
export function ignoreClosedReaders(streams: readonly OutputStream[] = [process.stdout, process.stderr]): void {
  for (const s of streams) {
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
}

/**
 * Exits with `code` once every earlier write to `streams` has been handed to the OS: a
 * stream's write callbacks run in order, so the callback of an empty write comes after them.
 * @example process.stdout.write(bigJson); exitWhenFlushed(0);
 */
export function exitWhenFlushed(code: number, streams: readonly OutputStream[] = [process.stdout, process.stderr], exit: (code: number) => void = (c) => process.exit(c)): void {
  process.exitCode = code;
  if (streams.length === 0) return exit(code);
  let pending = streams.length;
  const done = () => {
    if (--pending === 0) exit(code);
  };
  for (const s of streams) {
    if (s.destroyed || s.writable === false) done();
    else s.write('', () => done());
  }
}

/** write(2) of `buf` from `offset` on descriptor `fd`: the bytes written (fs.writeSync's signature). */
export type WriteFn = (fd: number, buf: Buffer, offset: number) => number;

/**
 * Writes `text` to descriptor `fd` at once with write(2), without making process.stdout or
 * process.stderr: a per-call executable (dvdcli, the FlexVolume driver) that writes a line or
 * two saves building a stream over each pipe, a few per cent of its start. Returns what a
 * non-blocking pipe that is full (EAGAIN) did not take, for a stream to finish; a reader that
 * went away (EPIPE) or no descriptor at all (EBADF) drops the rest, as ignoreClosedReaders does.
 * @example const rest = writeNow(1, `${path}\n`); // rest.length === 0: all written
 */
export function writeNow(fd: number, text: string, write: WriteFn = (f, b, o) => writeSync(f, b, o)): Buffer {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += write(fd, buf, off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') return buf.subarray(off);
      if (code === 'EPIPE' || code === 'EBADF') return Buffer.alloc(0);
      throw err;
    }
  }
  return buf.subarray(off);
}

/**
 * The output of a per-call executable: `out(fd, text)` writes at once (writeNow), handing only
 * what a full pipe refuses to process.stdout/stderr; `exit(code)` ends the process once all of
 * it has reached the OS (at once when no stream was needed).
 * @example const o = directOutput(); o.out(2, logLine); o.out(1, `${path}\n`); o.exit(0);
 */
export function directOutput(write?: WriteFn, exit: (code: number) => void = (c) => process.exit(c)): { out(fd: 1 | 2, text: string): void; exit(code: number): void } {
  // Streams are made only for a descriptor whose pipe was full: process.stdout's getter builds one.
  const queued = new Map<1 | 2, OutputStream>();
  return {
    out(fd, text) {
      // Once a stream holds part of this descriptor's output, the rest queues behind it.
      const held = queued.get(fd);
      if (held) {
        held.write(text);
        return;
      }
      const rest = writeNow(fd, text, write);
      if (rest.length === 0) return;
      const s = fd === 1 ? process.stdout : process.stderr;
      ignoreClosedReaders([s]);
      queued.set(fd, s);
      s.write(rest);
    },
    exit(code) {
      if (queued.size === 0) {
        process.exitCode = code;
        exit(code);
      } else {
        exitWhenFlushed(code, [...queued.values()], exit);
      }
    },
  };
}
