/**
 * The daemon's claim on its state root. It must work on a full disk (a daemon that cannot
 * start cannot even answer reads), so claiming writes nothing:
 * - the lock is the state database's own: openStore holds state.db exclusively, the kernel
 *   drops the lock when the process dies (kill -9 included), and a second daemon on the same
 *   state root is refused before it touches anything (backends, reconcile);
 * - <stateRoot>/daemon.pid names the holder, for operators and for the second daemon's
 *   error. It is written once the lock is held, whole (temporary name + rename), and
 *   best-effort: on a full disk the daemon runs without it and leaves no partial file.
 * Before opening, the state root and the database's files lose any access other users had
 * (core/private-state.ts); what changed is returned for the daemon's one log line.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError, failedPrecondition, isBerthError, openStore, PRIVATE_DIR_MODE, tightenStateRoot, type Logger, type ModeChange, type Store,
} from '../core/index.js';

const PID_FILE = 'daemon.pid';
/** How long a refused daemon waits for the holder to write its pid (it writes it right after taking the lock). */
const PID_WAIT_MS = 5_000;

export interface ClaimedStateRoot {
  readonly store: Store;
  /** Modes taken away from existing files (for the daemon's one log line). */
  readonly tightened: readonly ModeChange[];
  /** Removes daemon.pid if it still names this process (the caller closes the store). */
  releasePidFile(): Promise<void>;
}

/**
 * @example const { store, releasePidFile } = await claimStateRoot('/var/lib/berth', log);
 */
export async function claimStateRoot(stateRoot: string, log: Logger): Promise<ClaimedStateRoot> {
  await mkdir(stateRoot, { recursive: true, mode: PRIVATE_DIR_MODE });
  const dbPath = join(stateRoot, 'state.db');
  const tightened = await tightenStateRoot(stateRoot, dbPath);
  let store: Store;
  try {
    store = openStore(dbPath, { log });
  } catch (err) {
    if (isBerthError(err) && err.kind === 'FailedPrecondition') throw await heldBy(stateRoot, err);
    throw err;
  }
  const file = join(stateRoot, PID_FILE);
  await removeLeftovers(stateRoot, log);
  const written = await writePidFile(file, log);
  return {
    store,
    tightened,
    async releasePidFile() {
      if (!written) return;
      if ((await readFile(file, 'utf8').catch(() => '')).trim() === String(process.pid)) await rm(file, { force: true });
    },
  };
}

/** Writes daemon.pid whole, or not at all (ENOSPC): true when written. */
async function writePidFile(file: string, log: Logger): Promise<boolean> {
  const tmp = `${file}.${process.pid}`;
  try {
    await writeFile(tmp, `${process.pid}\n`, { mode: 0o600 });
    await rename(tmp, file);
    return true;
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    // One left by a dead daemon (this one holds the lock) would name the wrong process.
    await rm(file, { force: true }).catch(() => undefined);
    log.warn({ err, file }, 'could not write the pid file; running without it (the state database lock is the claim)');
    return false;
  }
}

/** daemon.pid.<pid> files an older berth left behind when it could not finish writing one. */
async function removeLeftovers(stateRoot: string, log: Logger): Promise<void> {
  const names = await readdir(stateRoot).catch(() => [] as string[]);
  for (const n of names.filter((x) => /^daemon\.pid\.\d+$/.test(x))) {
    await rm(join(stateRoot, n), { force: true }).catch((err: unknown) => log.warn({ err, file: n }, 'could not remove a stale pid file'));
  }
}

/** The refusal, naming the daemon that holds the state root (its pid file may take a moment to appear). */
async function heldBy(stateRoot: string, err: BerthError): Promise<BerthError> {
  const deadline = Date.now() + PID_WAIT_MS;
  for (;;) {
    const pid = Number((await readFile(join(stateRoot, PID_FILE), 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && (await isBerthProcess(pid))) {
      return failedPrecondition(`another berth daemon (pid ${pid}) is using the state root ${stateRoot}`);
    }
    if (Date.now() > deadline) return failedPrecondition(`another process is using the state root ${stateRoot}: ${err.message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function isBerthProcess(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('berth');
}
