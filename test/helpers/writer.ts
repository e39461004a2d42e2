/**
 * Runs test/helpers/record-writer.mjs as a consumer on a node (in its mount namespace, like a
 * container there) and follows what it reports, event by event.
 *
 *   const w = startRecordWriter(root, { nsPid, file: `${mount.path}/records` });
 *   await w.until((s) => s.synced >= 50);       // resolves on the line that makes it true
 *   ...; w.records(readFileSync(copy, 'utf8'));  // checks a file's content against what was synced
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { TmpRoot } from './tmp-root.js';

const SCRIPT = new URL('./record-writer.mjs', import.meta.url).pathname;

export interface WriterState {
  /** Highest record the writer was told is synced (0: none). */
  readonly synced: number;
  /** Failed attempts so far, and those since the first failure with their error codes. */
  readonly failures: number;
  readonly codes: readonly string[];
  /** Records reported synced after the first failure (must stay 0 once fenced). */
  readonly syncedAfterFailure: number;
  readonly exited: boolean;
}

export interface RecordWriter {
  state(): WriterState;
  /** Resolves when `pred` holds (checked at each line the writer prints); rejects after `ms` or when the writer exits first. */
  until(pred: (s: WriterState) => boolean, what: string, ms?: number): Promise<WriterState>;
  /** Stops the writer (SIGKILL) and waits for its exit. */
  stop(): Promise<void>;
}

/** The content a file must start with: records 1..n in order. */
export function expectedRecords(n: number): string {
  let out = '';
  for (let i = 1; i <= n; i++) out += `record ${String(i).padStart(8, '0')}\n`;
  return out;
}

/**
 * Starts the writer on a node (`nsPid`: its namespace holder; null: the host's namespace).
 * @example const w = startRecordWriter(root, { nsPid: a.nsPid, file: '/x/records' });
 */
export function startRecordWriter(root: TmpRoot, o: { nsPid: number | null; file: string; pauseMs?: number }): RecordWriter {
  const argv = [process.execPath, SCRIPT, o.file, String(o.pauseMs ?? 5)];
  const [bin, ...args] = (o.nsPid ? ['nsenter', '-t', String(o.nsPid), '-m', '--', ...argv] : argv) as [string, ...string[]];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  let synced = 0;
  let failures = 0;
  let syncedAfterFailure = 0;
  const codes: string[] = [];
  let exited = false;
  const waiters = new Set<() => void>();
  const state = (): WriterState => ({ synced, failures, codes, syncedAfterFailure, exited });
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    for (const w of waiters) w();
    resolve();
  }));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [what, n, code] = line.split(' ');
    if (what === 'synced') {
      synced = Number(n);
      if (failures > 0) syncedAfterFailure++;
    } else if (what === 'failed') {
      failures++;
      if (codes.length < 20) codes.push(code ?? '?');
    }
    for (const w of waiters) w();
  });
  const stop = async () => {
    if (!exited) child.kill('SIGKILL');
    await exit;
  };
  root.defer(stop);
  return {
    state,
    until(pred, what, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const s = state();
          if (pred(s)) done(() => resolve(s));
          else if (s.exited) done(() => reject(new Error(`the writer exited before ${what}: ${stderr.slice(-500)}`)));
        };
        const done = (fn: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          fn();
        };
        const timer = setTimeout(() => done(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(state())} ${stderr.slice(-500)}`))), ms);
        waiters.add(check);
        check();
      });
    },
    stop,
  };
}
