/**
 * Machine-wide locks for what every test run on this machine shares (Docker driver names,
 * starting and stopping dockerd), whatever checkout, TMPDIR or Node version it runs from:
 * flock(2) on a file in TEST_RUN_DIR/locks, held by a `flock` process (util-linux) whose
 * command waits on a pipe from this process. The kernel drops the lock when that process
 * exits, and it exits as soon as the pipe closes: on release(), or when this process dies,
 * however it dies. So there is no stale lock to take over and no pid to trust, and waiting
 * is the kernel's (flock --timeout), never a poll. Lock files stay (deleting a lock file
 * races with its next user); they are empty.
 *
 *   const held = await acquireLock('driver-berth-test-docker-0', 60_000);
 *   try { ... } finally { await held.release(); }
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';

/** Where the test runs of this machine keep what they share: locks, fixed plugin sockets. */
export const TEST_RUN_DIR = '/run/berth-test';
const LOCK_DIR = join(TEST_RUN_DIR, 'locks');
const CONFLICT = 75;

export interface Lock {
  readonly name: string;
  /** Releases the lock and waits until the kernel has dropped it; safe to call twice. */
  release(): Promise<void>;
}

interface Pending {
  readonly done: Promise<Lock | null>;
  /** Stops waiting; a lock taken meanwhile is released. */
  cancel(): void;
}

function startFlock(name: string, o: { shared: boolean; waitMs: number | null }): Pending {
  const file = join(LOCK_DIR, name);
  const wait = o.waitMs === null ? ['--nonblock'] : ['--timeout', (Math.max(o.waitMs, 1) / 1000).toFixed(3)];
  // `sh` says when the lock is held, then `cat` holds it until stdin (our pipe) closes.
  const child: ChildProcess = spawn('flock', [o.shared ? '--shared' : '--exclusive', ...wait, '--conflict-exit-code', String(CONFLICT),
    file, 'sh', '-c', 'echo held && exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // Closing stdin ends `cat`, which ends flock (and with it the lock) whatever state it is in.
  const letGo = () => {
    child.ref(); // waited for now
    child.stdin!.end();
    return exited.then(() => undefined);
  };
  let lock: Lock | null = null;
  let cancelled = false;
  const done = new Promise<Lock | null>((resolve, reject) => {
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout!.once('data', () => {
      if (cancelled) {
        void letGo();
        resolve(null);
        return;
      }
      let released: Promise<void> | null = null;
      lock = { name, release: () => (released ??= letGo()) };
      // Held: nothing more to read, and a held lock never keeps this process alive.
      child.stdout!.destroy();
      child.stderr!.destroy();
      (child.stdin as unknown as Socket).unref();
      child.unref();
      resolve(lock);
    });
    child.once('error', reject);
    void exited.then((code) => {
      if (lock) return;
      if (code === CONFLICT || cancelled) resolve(null);
      else reject(new Error(`flock ${file} exited ${code}: ${stderr.trim()}`));
    });
  });
  return {
    done,
    cancel: () => {
      cancelled = true;
      if (lock) {
        void lock.release();
        return;
      }
      // Still waiting: stop flock; a `cat` it may just have started ends with its stdin.
      void letGo();
      child.kill();
    },
  };
}

async function lockDir(): Promise<void> {
  await mkdir(LOCK_DIR, { recursive: true, mode: 0o700 });
}

/**
 * Takes the lock if nobody holds it (in a conflicting mode); null otherwise.
 * @example const l = await tryLock('dockerd-users', { shared: false }); if (l) { ...; await l.release(); }
 */
export async function tryLock(name: string, o: { shared?: boolean } = {}): Promise<Lock | null> {
  await lockDir();
  return startFlock(name, { shared: o.shared ?? false, waitMs: null }).done;
}

/**
 * Waits (in the kernel) until the lock is free and takes it.
 * @example const held = await acquireLock('dockerd-start', 60_000);
 */
export async function acquireLock(name: string, timeoutMs: number, o: { shared?: boolean } = {}): Promise<Lock> {
  await lockDir();
  const held = await startFlock(name, { shared: o.shared ?? false, waitMs: timeoutMs }).done;
  if (!held) throw new Error(`timed out after ${timeoutMs} ms waiting for the lock ${join(LOCK_DIR, name)}`);
  return held;
}

/**
 * The first of `names` that is free (exclusively), waiting for whichever is released first.
 * @example const held = await acquireAny(['driver-a', 'driver-b'], 120_000); // held.name
 */
export async function acquireAny(names: readonly string[], timeoutMs: number): Promise<Lock> {
  await lockDir();
  for (const n of names) {
    const held = await startFlock(n, { shared: false, waitMs: null }).done;
    if (held) return held;
  }
  // All held: wait on every one of them at once, keep the first, let go of the others.
  const waits = names.map((n) => startFlock(n, { shared: false, waitMs: timeoutMs }));
  const first = await new Promise<{ lock: Lock; i: number } | null>((resolve) => {
    let left = waits.length;
    const none = () => --left === 0 && resolve(null);
    waits.forEach((w, i) => w.done.then((lock) => (lock ? resolve({ lock, i }) : none()), none));
  });
  waits.forEach((w, i) => i !== first?.i && w.cancel());
  if (!first) throw new Error(`timed out after ${timeoutMs} ms: ${names.join(', ')} are all held by other running tests`);
  return first.lock;
}
