/**
 * The only place berth starts a process. Commands run from an absolute path on an
 * allow-list, with an argument array (never a shell), a required timeout that
 * escalates SIGTERM -> SIGKILL, a bounded output buffer and an optional AbortSignal.
 * User input can therefore only ever be one argv element.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface CommandSpec {
  /** Program name as on the allow-list ("mount", "losetup", "mkfs.ext4", ...). */
  readonly bin: string;
  readonly args: readonly string[];
  /** Hard deadline for the whole command. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Data written to stdin (stdin is closed otherwise). */
  readonly input?: string;
  /** Exit codes that count as success (default [0]). */
  readonly okCodes?: readonly number[];
}

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export type Exec = (cmd: CommandSpec) => Promise<CommandResult>;

export class CommandError extends Error {
  constructor(
    readonly bin: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly timedOut: boolean,
    readonly stderrTail: string,
  ) {
    const why = timedOut
      ? 'timed out'
      : exitCode !== null ? `exited with ${exitCode}` : signal !== null ? `killed by ${signal}` : 'could not be started';
    super(`${bin} ${args.join(' ')} ${why}${stderrTail ? `: ${stderrTail}` : ''}`);
    this.name = 'CommandError';
  }
}

/**
 * Programs berth may run. Anything else is refused before a process starts. mount, umount
 * and losetup's attach/detach are system calls now (sys.ts); losetup stays for listing loop
 * devices where sysfs cannot be read.
 */
export const ALLOWED_BINARIES = [
  'losetup', 'blkid', 'blockdev', 'findmnt', 'truncate', 'cp',
  'mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'resize2fs', 'e2fsck', 'xfs_growfs', 'xfs_admin', 'tune2fs',
  'btrfs', 'fsfreeze', 'sync',
] as const;

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const KILL_GRACE_MS = 2_000;
const MAX_BUFFER = 4 * 1024 * 1024;

function resolveBinary(bin: string, cache: Map<string, string>): string {
  const hit = cache.get(bin);
  if (hit) return hit;
  if (!(ALLOWED_BINARIES as readonly string[]).includes(bin)) {
    throw new CommandError(bin, [], null, null, false, `${bin} is not on the allow-list`);
  }
  for (const dir of SEARCH_PATH) {
    const p = `${dir}/${bin}`;
    if (existsSync(p)) {
      cache.set(bin, p);
      return p;
    }
  }
  throw new CommandError(bin, [], 127, null, false, `${bin} not found in ${SEARCH_PATH.join(':')}`);
}

/**
 * Builds the Exec function the daemon passes to backends and the core.
 * @example const exec = createExec(); await exec({ bin: 'losetup', args: ['--json'], timeoutMs: 10_000 });
 */
export function createExec(opts: { onCommand?: (cmd: CommandSpec, ms: number, ok: boolean) => void } = {}): Exec {
  const resolved = new Map<string, string>();
  return (cmd) =>
    new Promise<CommandResult>((resolve, reject) => {
      let path: string;
      try {
        path = resolveBinary(cmd.bin, resolved);
      } catch (err) {
        reject(err);
        return;
      }
      const started = performance.now();
      let timedOut = false;
      const child = execFile(
        path,
        cmd.args as string[],
        { shell: false, maxBuffer: MAX_BUFFER, signal: cmd.signal, env: { PATH: SEARCH_PATH.join(':'), LC_ALL: 'C' } },
        (err, stdout, stderr) => {
          clearTimeout(term);
          clearTimeout(kill);
          const code = child.exitCode ?? (err && typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null);
          const ok = !timedOut && code !== null && (cmd.okCodes ?? [0]).includes(code);
          opts.onCommand?.(cmd, performance.now() - started, ok);
          if (ok) {
            resolve({ stdout, stderr, exitCode: code });
            return;
          }
          const tail = String(stderr || stdout || (err as Error | null)?.message || '').trim().slice(-600);
          reject(new CommandError(cmd.bin, cmd.args, code, child.signalCode, timedOut, tail));
        },
      );
      // A command that exits without reading its input fails the write with EPIPE. Its exit
      // status says what happened; unhandled, the 'error' event would take the daemon down.
      child.stdin?.on('error', () => undefined);
      if (cmd.input !== undefined) child.stdin?.end(cmd.input);
      else child.stdin?.end();
      const term = setTimeout(() => {
        timedOut = true;
        child.kill('SIGTERM');
      }, cmd.timeoutMs);
      const kill = setTimeout(() => child.kill('SIGKILL'), cmd.timeoutMs + KILL_GRACE_MS);
    });
}

/**
 * Starts this program (the same node binary, flags and entry script) again as a process of its
 * own, in a session of its own, with `args` (fixed words: never user input). It is not waited
 * for and outlives this process on purpose: the fence agent must survive a kill -9 of the
 * daemon. Its output goes where this process's goes. Returns its pid.
 * @example const pid = spawnSelfDetached(['fence-agent', '--state-root', '/var/lib/berth']);
 */
export function spawnSelfDetached(args: readonly string[]): number | undefined {
  const script = process.argv[1];
  if (!script) throw new CommandError(process.execPath, args, null, null, false, 'this process has no entry script to start again');
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], { detached: true, stdio: ['ignore', 'inherit', 'inherit'] });
  // An exec failure shows up as 'error'; unhandled it would take the caller down.
  child.once('error', () => undefined);
  child.unref();
  return child.pid;
}

/** Where `bin` is installed on berth's search path, or null (start-up checks; no allow-list check). */
export function findBinary(bin: string): string | null {
  return SEARCH_PATH.map((dir) => `${dir}/${bin}`).find((p) => existsSync(p)) ?? null;
}
