/**
 * How the CLI shows the progress of a long copy (a restore from a snapshot, a clone): a
 * cli-progress bar when stderr is a terminal, plain "copying: N%" lines when it is a file
 * or a pipe (one line per whole percent, so logs stay short), and nothing at all with
 * --output json|yaml, whose stdout and stderr scripts parse. Progress goes to stderr so
 * stdout carries only the result.
 */
import type { OutputFormat } from './output.js';

export interface CopyProgress {
  /** Pass to the admin client; undefined when nothing should be shown (then nothing is asked for). */
  readonly onProgress: ((doneBytes: number, totalBytes: number) => void) | undefined;
  /** Ends the display (the bar stops, the line is finished); safe to call twice or unused. */
  stop(): void;
}

/** The stream progress is drawn on: process.stderr, or a stand-in in tests. */
export type ProgressStream = Pick<NodeJS.WriteStream, 'write'> & { readonly isTTY?: boolean };

/**
 * Builds the progress display for one copy (cli-progress is loaded for a terminal only).
 * @example const p = await createCopyProgress({ output: a.output, label: 'restoring' }); try { await client.createVolume(body, { onProgress: p.onProgress }); } finally { p.stop(); }
 */
export async function createCopyProgress(o: { output: OutputFormat; label: string; stream?: ProgressStream }): Promise<CopyProgress> {
  const stream = o.stream ?? process.stderr;
  if (o.output !== 'table') return { onProgress: undefined, stop() {} };
  if (!stream.isTTY) return lineProgress(o.label, stream);
  // cli-progress is CommonJS: its module.exports is `default`, under Node and in esbuild's chunks alike.
  const { SingleBar } = ((await import('cli-progress')) as unknown as { default: typeof import('cli-progress') }).default;
  return barProgress(o.label, stream, SingleBar);
}

/** Approximate bytes for a moving display ("64.6MiB"); exact sizes are output.ts's formatBytes. */
export function humanBytes(bytes: number): string {
  for (const [unit, mult] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= mult) return `${(bytes / mult).toFixed(1)}${unit}`;
  }
  return `${bytes}B`;
}

const percent = (done: number, total: number) => (total > 0 ? Math.floor((done / total) * 100) : 100);

function lineProgress(label: string, stream: ProgressStream): CopyProgress {
  let last = -1;
  return {
    onProgress(done, total) {
      const p = percent(done, total);
      if (p === last) return;
      last = p;
      stream.write(`${label}: ${p}% (${humanBytes(done)} of ${humanBytes(total)})\n`);
    },
    stop() {},
  };
}

function barProgress(label: string, stream: ProgressStream, SingleBar: typeof import('cli-progress').SingleBar): CopyProgress {
  const bar = new SingleBar({
    stream: stream as NodeJS.WritableStream,
    format: `${label} [{bar}] {percentage}% | {copied} of {size} | {eta_formatted} left`,
    hideCursor: true,
    clearOnComplete: false,
    etaBuffer: 20,
  });
  let started = false;
  return {
    onProgress(done, total) {
      // An empty source still ends at 100%: a 0-byte bar would divide by zero.
      const size = Math.max(total, 1);
      const value = total > 0 ? done : 1;
      const payload = { copied: humanBytes(done), size: humanBytes(total) };
      if (!started) {
        started = true;
        bar.start(size, value, payload);
      } else {
        bar.setTotal(size);
        bar.update(value, payload);
      }
    },
    stop() {
      if (!started) return;
      started = false;
      bar.stop();
    },
  };
}
