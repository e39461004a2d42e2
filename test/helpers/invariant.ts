/**
 * The two-writers invariant of issue 11, checked from outside berth while a test runs: every
 * ~20 ms it reads the mount table of every node (/proc/<pid>/mountinfo of a process in the
 * node's mount namespace) and fails if one disk image is mounted read-write on two nodes at
 * the same moment, unless all but one of those mounts are known dead.
 *
 * How an image is recognised: a mount whose source is a loop device; the device's backing
 * file is identified by its inode (st_dev:st_ino, as LOOP_GET_STATUS64 reports it through
 * `losetup`), because each node reaches the shared storage at a path of its own and the
 * kernel shows a backing file opened in another mount namespace under a path that does not
 * resolve here. The answer is cached per device and backing-file name (sysfs), so a reused
 * loop device is looked up again.
 *
 * The rule for a mount that is still in a node's table but can no longer write: it counts as
 * dead only after the test called `dead(node, image)`, which a test does only once it holds
 * proof that the filesystem's shutdown ioctl returned on that node: the fence record in the
 * catalog is `done` (its daemon or fence agent writes that only after FS_IOC_SHUTDOWN
 * returned for the volume, fencing.ts) or the node reports itself self-fenced with the volume
 * among what it shut down. A test then also asserts that the writer on that node gets EIO,
 * so the proof is checked, not assumed. Read-only mounts never count.
 *
 *   const inv = watchMounts({ a: pidA, b: pidB, c: pidC }, { under: root.dir });   // root.defer(inv.stop) by the caller
 *   ...; inv.dead('a', image); ...;
 *   inv.assertClean();  // throws with every violation seen
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';

export interface MountSample {
  readonly node: string;
  readonly majorMinor: string;
  readonly target: string;
  readonly device: string;
  /** "st_dev:st_ino" of the image behind the loop device (st_dev as major:minor). */
  readonly image: string;
}

export interface MountWatch {
  /** Marks `node`'s mounts of `imagePath` dead (see the rule above). */
  dead(node: string, imagePath: string): void;
  /** Read-write mounts of the image seen in the latest sample, per node. */
  writers(imagePath: string): string[];
  /** Every image seen mounted so far (ids as imageId gives them). */
  images(): string[];
  /** Samples taken so far (a test can assert the checker ran). */
  readonly samples: number;
  /** Every violation seen so far, as text. */
  readonly violations: readonly string[];
  /** Throws if any violation was seen. */
  assertClean(): void;
  /** Stops sampling (idempotent). */
  stop(): void;
}

/** "major:minor:ino" of a file as the host sees it. */
export function imageId(path: string): string {
  const st = statSync(path);
  return `${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}:${st.ino}`;
}

const unescape = (p: string) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

/** Parses one mountinfo line into what the checker needs, or null for non-loop mounts. */
function parseLine(line: string): { majorMinor: string; target: string; options: string[]; source: string; superOptions: string[] } | null {
  const sep = line.indexOf(' - ');
  if (sep < 0) return null;
  const left = line.slice(0, sep).split(' ');
  const right = line.slice(sep + 3).split(' ');
  const source = right[1] ?? '';
  if (!/^\/dev\/loop\d+$/.test(source)) return null;
  return { majorMinor: left[2]!, target: left[4]!, options: left[5]!.split(','), source, superOptions: (right[2] ?? '').split(',') };
}

/**
 * Starts sampling the nodes' mount tables (`pids`: a process in each node's namespace;
 * process.pid for a node in the host's). Samples on a timer, never blocks the test.
 * Only mounts whose target is under `under` (the test's root) count.
 * @example const inv = watchMounts({ a: c.node('a').nsPid! }, { under: root.dir }); root.defer(() => inv.stop());
 */
export function watchMounts(pids: Readonly<Record<string, number>>, o: { under: string; everyMs?: number }): MountWatch {
  const everyMs = o.everyMs ?? 20;
  const under = o.under.endsWith('/') ? o.under : `${o.under}/`;
  const backing = new Map<string, string>(); // "<dev>|<sysfs backing_file>" -> image id
  const deadMarks = new Set<string>(); // "<node>|<image id>"
  const violations: string[] = [];
  const seenViolation = new Set<string>();
  let latest: MountSample[] = [];
  let samples = 0;

  const imageOf = (device: string): string | null => {
    const name = device.slice('/dev/'.length);
    let file: string;
    try {
      file = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
    } catch {
      return null; // detached meanwhile
    }
    const key = `${device}|${file}`;
    const hit = backing.get(key);
    if (hit) return hit;
    try {
      const out = execFileSync('losetup', ['-l', '-n', '-O', 'BACK-MAJ:MIN,BACK-INO', device], { encoding: 'utf8', timeout: 5_000 }).trim();
      const [mm, ino] = out.split(/\s+/);
      if (!mm || !ino) return null;
      const id = `${mm}:${ino}`;
      backing.set(key, id);
      return id;
    } catch {
      return null;
    }
  };

  const sample = () => {
    const now: MountSample[] = [];
    for (const [node, pid] of Object.entries(pids)) {
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
      } catch {
        continue; // the namespace is gone (node powered off): nothing mounted there any more
      }
      const seen = new Set<string>();
      for (const line of text.split('\n')) {
        const m = parseLine(line);
        // Only this test's mounts: a namespace made by unshare starts with a copy of every
        // mount the host had then, other suites' included, which it keeps (private).
        if (!m || seen.has(m.majorMinor) || !unescape(m.target).startsWith(under)) continue;
        if (!m.options.includes('rw') || !m.superOptions.includes('rw')) continue;
        const image = imageOf(m.source);
        if (!image) continue;
        seen.add(m.majorMinor);
        now.push({ node, majorMinor: m.majorMinor, target: m.target, device: m.source, image });
      }
    }
    samples++;
    latest = now;
    const byImage = new Map<string, MountSample[]>();
    for (const s of now) byImage.set(s.image, [...(byImage.get(s.image) ?? []), s]);
    for (const [image, ms] of byImage) {
      const nodes = [...new Set(ms.map((s) => s.node))];
      const live = nodes.filter((n) => !deadMarks.has(`${n}|${image}`));
      if (nodes.length < 2 || live.length < 2) continue;
      const key = `${image}|${live.sort().join(',')}`;
      if (seenViolation.has(key)) continue;
      seenViolation.add(key);
      violations.push(`${new Date().toISOString()}: image ${image} mounted read-write on nodes ${live.join(' and ')} at once: ${ms.map((s) => `${s.node}:${s.device} on ${s.target}`).join('; ')}`);
    }
  };

  sample();
  const timer = setInterval(sample, everyMs);
  timer.unref();
  return {
    dead(node, imagePath) {
      deadMarks.add(`${node}|${imageId(imagePath)}`);
    },
    writers(imagePath) {
      const id = imageId(imagePath);
      return [...new Set(latest.filter((s) => s.image === id).map((s) => s.node))].sort();
    },
    images: () => [...new Set(backing.values())],
    get samples() {
      return samples;
    },
    violations,
    assertClean() {
      sample();
      if (violations.length) throw new Error(`two writers:\n${violations.join('\n')}`);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
