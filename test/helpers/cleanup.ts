// Test cleanup that runs even when a test failed: a LIFO stack of steps (every step runs,
// errors are collected), a sweep that unmounts and detaches whatever is left under a
// temporary root, and a leak check that asks the kernel through `findmnt` and `losetup -a`
// (independent of berth's own parsers) whether anything under the root survived.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CleanupStack {
  /** Registers a step; steps run last-in first-out. */
  defer(label: string, step: () => unknown | Promise<unknown>): void;
  /** Runs every step once (even after one fails), then throws an AggregateError if any failed. */
  run(): Promise<void>;
}

/** @example const stack = createCleanupStack(); stack.defer('umount', () => ...); afterEach(() => stack.run()); */
export function createCleanupStack(): CleanupStack {
  let steps: Array<{ label: string; step: () => unknown | Promise<unknown> }> = [];
  return {
    defer(label, step) {
      steps.push({ label, step });
    },
    async run() {
      const todo = steps.reverse();
      steps = [];
      const errors: Error[] = [];
      for (const { label, step } of todo) {
        try {
          await step();
        } catch (err) {
          errors.push(new Error(`cleanup step "${label}" failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
        }
      }
      if (errors.length) throw new AggregateError(errors, errors.map((e) => e.message).join('; '));
    },
  };
}

export interface Leftovers {
  /** Mount targets under the root, or mounts whose source is a loop device backed by a file under it. */
  readonly mounts: string[];
  /** Loop devices whose backing file is under the root. */
  readonly loops: string[];
}

const under = (path: string, root: string): boolean => path === root || path.startsWith(`${root}/`);

async function loopsUnder(root: string): Promise<string[]> {
  // "/dev/loop3: [65024]:1234 (/tmp/x/vol.img)" or "... (/tmp/x/vol.img (deleted))"
  const { stdout } = await run('losetup', ['-a']);
  const out: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^(\/dev\/loop\d+): .*?\((.*)\)$/.exec(line.trim());
    if (m && under(m[2]!.replace(/ \(deleted\)$/, ''), root)) out.push(m[1]!);
  }
  return out;
}

async function mountsUnder(root: string, loops: readonly string[]): Promise<string[]> {
  const { stdout } = await run('findmnt', ['--raw', '--noheadings', '--output', 'TARGET,SOURCE']);
  const out: string[] = [];
  for (const line of stdout.split('\n')) {
    const [rawTarget, source] = line.split(' ');
    if (!rawTarget) continue;
    const target = rawTarget.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    if (under(target, root) || (source && loops.includes(source))) out.push(target);
  }
  return out;
}

/** What the kernel still holds under `root`. */
export async function findLeftovers(root: string): Promise<Leftovers> {
  const loops = await loopsUnder(root);
  return { mounts: await mountsUnder(root, loops), loops };
}

/**
 * Unmounts (deepest first, lazily as a last resort) and detaches everything under `root`.
 * Returns what it had to clean, so a test can assert that the code under test left nothing.
 */
export async function sweepRoot(root: string): Promise<Leftovers> {
  const found = await findLeftovers(root);
  for (const target of [...found.mounts].sort((a, b) => b.length - a.length)) {
    await run('umount', [target]).catch(() => run('umount', ['-l', target]).catch(() => undefined));
  }
  for (const dev of found.loops) await run('losetup', ['-d', dev]).catch(() => undefined);
  return found;
}
