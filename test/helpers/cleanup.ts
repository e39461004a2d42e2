// Test cleanup that runs even when a test failed: a LIFO stack of steps (every step runs,
// errors are collected), and the kernel's own view of what is left under a temporary root
// (read from /proc/self/mountinfo and `losetup --json`, independent of berth's parsers),
// with a sweep that unmounts and detaches it. tmp-root.ts builds per-test roots on these.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
  /** Mount targets under the root, and mounts anywhere whose source is one of `loops`. */
  readonly mounts: string[];
  /** Loop devices backed by files under the root ("/dev/loop7" and its backing file). */
  readonly loops: Array<{ device: string; backingFile: string }>;
}

const under = (path: string, root: string): boolean => path === root || path.startsWith(`${root}/`);
const unescapeOctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function loopsUnder(root: string): Leftovers['loops'] {
  let json: string;
  try {
    json = execFileSync('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8', timeout: 30_000 });
  } catch {
    return [];
  }
  if (!json.trim()) return [];
  const parsed = JSON.parse(json) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  return (parsed.loopdevices ?? [])
    .filter((d) => d['back-file'] && under(d['back-file'].replace(/ \(deleted\)$/, ''), root))
    .map((d) => ({ device: d.name, backingFile: d['back-file']! }));
}

function mountsUnder(root: string, loops: Leftovers['loops']): string[] {
  const devices = new Set(loops.map((l) => l.device));
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const target = unescapeOctal(line.split(' ')[4] ?? '');
    const source = unescapeOctal(line.slice(sep + 3).split(' ')[1] ?? '');
    if (under(target, root) || devices.has(source)) out.push(target);
  }
  return out;
}

/**
 * What the kernel holds under `root` right now. Synchronous so a test can write
 * `expect(leftovers(dir)).toEqual({ mounts: [], loops: [] })`.
 */
export function leftovers(root: string): Leftovers {
  const loops = loopsUnder(root);
  return { mounts: mountsUnder(root, loops), loops };
}

/** leftovers() for callers that await. */
export async function findLeftovers(root: string): Promise<Leftovers> {
  return leftovers(root);
}

function run(bin: string, args: string[]): boolean {
  try {
    execFileSync(bin, args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Unmounts (deepest first, lazily as a last resort) and detaches everything under `root`,
 * in a few passes (a loop device can hold a mount and vice versa, a lazy detach settles
 * late). Returns what it found first, so a test can assert the code under test left nothing.
 */
export function sweep(root: string): Leftovers {
  const found = leftovers(root);
  let left = found;
  for (let pass = 0; pass < 3 && (left.mounts.length > 0 || left.loops.length > 0); pass++) {
    for (const m of [...left.mounts].sort((a, b) => b.length - a.length)) run('umount', [m]) || run('umount', ['-l', m]);
    for (const l of left.loops) run('losetup', ['-d', l.device]);
    left = leftovers(root);
  }
  return found;
}

/** sweep() for callers that await. */
export async function sweepRoot(root: string): Promise<Leftovers> {
  return sweep(root);
}
