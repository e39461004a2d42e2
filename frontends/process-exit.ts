/**
 * How the short-lived executables (`berth` client commands, dvdcli, the FlexVolume driver)
 * end: only once everything they wrote to stdout and stderr has reached the OS.
 *
 * A write to a pipe that is full (64 KiB unread: `berth volume ls --output=json | jq`,
 * `$(...)`) is queued and finished later by the event loop; process.exit() before that
 * drops the rest, so a script would read a truncated reply. Every exit path goes through
 * exitWhenFlushed instead.
 */

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
