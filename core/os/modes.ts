/**
 * Permission bits of berth's own files and directories: take away what a path must not
 * grant, never add. Used at start-up to tighten state left by an older berth (or a
 * careless umask).
 */
import { chmod, stat } from 'node:fs/promises';
import { fchmod as fchmodCb, fstat as fstatCb, type Stats } from 'node:fs';
import { promisify } from 'node:util';

/** A mode that was changed: for the one start-up log line. */
export interface ModeChange {
  readonly path: string;
  /** Octal, e.g. "755" -> "700". */
  readonly from: string;
  readonly to: string;
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/**
 * Clears every permission bit of `path` that `allowed` does not grant (so 0755 with
 * allowed 0700 becomes 0700, and 0700 stays 0700); `allowed` may depend on the path's
 * stat (its group). Missing path: null. Follows a symlink, as chmod does: only call it on
 * paths berth made.
 * @example const change = await restrictMode('/var/lib/berth', 0o700);
 */
export async function restrictMode(path: string, allowed: number | ((st: Stats) => number)): Promise<ModeChange | null> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!st) return null;
  const mask = typeof allowed === 'number' ? allowed : allowed(st);
  if ((st.mode & 0o7777 & ~mask) === 0) return null;
  const to = st.mode & 0o7777 & mask;
  await chmod(path, to);
  return { path, from: octal(st.mode), to: octal(to) };
}

const fstatAsync = promisify(fstatCb);
const fchmodAsync = promisify(fchmodCb);

/**
 * The same for an open descriptor that is a regular file (a log file the daemon's
 * stdout/stderr was redirected to); a pipe, a terminal or a socket is left alone.
 * @example await restrictFdMode(2, 0o640, '<stderr>');
 */
export async function restrictFdMode(fd: number, allowed: number, name: string): Promise<ModeChange | null> {
  const st = await fstatAsync(fd).catch(() => null);
  if (!st?.isFile() || (st.mode & 0o7777 & ~allowed) === 0) return null;
  const to = st.mode & 0o7777 & allowed;
  await fchmodAsync(fd, to);
  return { path: name, from: octal(st.mode), to: octal(to) };
}
