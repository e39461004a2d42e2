/**
 * A temporary root per test plus a cleanup stack that runs even when the test fails.
 *
 *   const roots = useTmpRoots();              // in the describe/file: registers afterEach
 *   const root = await roots.create('cli');   // in a test: /tmp/berth-cli-XXXX
 *   root.defer(() => something.stop());      // runs first, last-in first-out
 *
 * cleanup() runs the deferred steps, then sweeps the kernel: every mount under the root is
 * unmounted (deepest first), every loop device whose backing file is under the root is
 * detached, and the directory (sockets included) is removed. It reports what it had to
 * clean so a test can assert that nothing was left (`leftovers()`).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

export interface TmpRoot {
  /** Absolute path of the root directory. */
  readonly dir: string;
  /** join(dir, ...parts). */
  path(...parts: string[]): string;
  /** Registers a cleanup step (runs before the kernel sweep, LIFO). */
  defer(fn: () => unknown): void;
  /** Runs deferred steps and the sweep; safe to call twice. */
  cleanup(): Promise<void>;
}

export interface Leftovers {
  /** Mount points under the root. */
  readonly mounts: string[];
  /** Loop devices backed by files under the root ("/dev/loop7 -> /tmp/.../x.img"). */
  readonly loops: Array<{ device: string; backingFile: string }>;
}

/** Creates a root now; the caller must call cleanup() (prefer useTmpRoots()). */
export function createTmpRoot(label = 'test'): TmpRoot {
  const dir = mkdtempSync(join(tmpdir(), `berth-${label.replace(/[^A-Za-z0-9_-]/g, '-')}-`));
  const steps: Array<() => unknown> = [];
  let done = false;
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    defer: (fn) => void steps.push(fn),
    async cleanup() {
      if (done) return;
      done = true;
      const errors: unknown[] = [];
      for (const fn of steps.splice(0).reverse()) {
        try {
          await fn();
        } catch (err) {
          errors.push(err);
        }
      }
      sweep(dir);
      rmSync(dir, { recursive: true, force: true });
      if (errors.length) throw new AggregateError(errors, `cleanup of ${dir}: ${errors.length} step(s) failed`);
    },
  };
}

/**
 * Per-test roots with automatic cleanup after each test, failed or not.
 * @example const roots = useTmpRoots(); it('x', async () => { const root = roots.create('x'); });
 */
export function useTmpRoots(): { create(label?: string): TmpRoot } {
  const live: TmpRoot[] = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    for (const r of live.splice(0).reverse()) await r.cleanup().catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  });
  return {
    create(label) {
      const r = createTmpRoot(label);
      live.push(r);
      return r;
    },
  };
}

/** Mounts and loop devices under `dir` right now (the kernel's view). */
export function leftovers(dir: string): Leftovers {
  return { mounts: mountsUnder(dir), loops: loopsUnder(dir) };
}

function sweep(dir: string): void {
  // Several passes: a loop device can hold a mount and vice versa, and a lazy detach settles late.
  for (let pass = 0; pass < 3; pass++) {
    for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length)) {
      run('umount', [m]) || run('umount', ['-l', m]);
    }
    for (const l of loopsUnder(dir)) run('losetup', ['-d', l.device]);
    if (mountsUnder(dir).length === 0 && loopsUnder(dir).length === 0) return;
  }
}

function run(bin: string, args: string[]): boolean {
  try {
    execFileSync(bin, args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

const underDir = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const target = line.split(' ')[4];
    if (!target) continue;
    const path = target.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (underDir(path, dir)) out.push(path);
  }
  return out;
}

function loopsUnder(dir: string): Array<{ device: string; backingFile: string }> {
  let json: string;
  try {
    json = execFileSync('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8', timeout: 30_000 });
  } catch {
    return [];
  }
  if (!json.trim()) return [];
  const parsed = JSON.parse(json) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  return (parsed.loopdevices ?? [])
    .filter((d) => d['back-file'] && underDir(d['back-file'].replace(/ \(deleted\)$/, ''), dir))
    .map((d) => ({ device: d.name, backingFile: d['back-file']! }));
}
