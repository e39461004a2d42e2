// Progress of long copies end to end: a real daemon snapshots, clones and restores a loop volume holding
// 64 MiB of data (in a 1 GiB sparse image), and the progress travels backend -> core ->
// admin API (NDJSON) -> client -> `berth volume create`: a bar on a terminal (through
// script(1), a real pty), percentage lines on a pipe, nothing with --output json.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { Volume } from '../../core/types.js';
import { writeMiB } from '../helpers/btrfs-pool.js';
import { BERTH_JS, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const run = promisify(execFile);
const roots = useTmpRoots();
const unique = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

/** A daemon with a loop volume `src` (1 GiB ext4, 64 MiB written) and a snapshot of it. */
async function daemonWithData(label: string): Promise<{ d: TestDaemon; src: string; snap: string }> {
  const d = await startTestDaemon(roots.create(label));
  const src = unique('src');
  const snap = unique('snap');
  await d.client.createVolume({ name: src, backend: 'loop', size: '1GiB', fs: 'ext4' });
  const { path } = await d.client.mount(src, { consumer: 'test:progress' });
  expect((await writeMiB(`${path}/data`, 64)).ok).toBe(true);
  await d.client.unmount(src, { consumer: 'test:progress' });
  await d.client.createSnapshot({ name: snap, volume: src });
  return { d, src, snap };
}

describe('copy progress through the admin API and the CLI', () => {
  it('the admin client sees 0 first, monotonic bytes of one total, and the total last; the plain reply is unchanged', async () => {
    const { d, src, snap } = await daemonWithData('progress-client');
    for (const body of [{ name: unique('clone'), fromVolume: src }, { name: unique('restore'), fromSnapshot: snap }]) {
      const events: Array<[number, number]> = [];
      const vol = await d.client.createVolume(body, { onProgress: (done, total) => events.push([done, total]) });
      expect(vol).toMatchObject({ name: body.name, backend: 'loop', sizeBytes: 2 ** 30, status: 'ready' });
      expect(events.length).toBeGreaterThanOrEqual(2);
      const total = events[0]![1];
      expect(total).toBeGreaterThanOrEqual(64 * 2 ** 20); // the written data, not the 1 GiB apparent size
      expect(total).toBeLessThan(2 ** 30);
      expect(events[0]).toEqual([0, total]);
      expect(events.at(-1)).toEqual([total, total]);
      for (let i = 1; i < events.length; i++) {
        expect(events[i]![1]).toBe(total);
        expect(events[i]![0]).toBeGreaterThanOrEqual(events[i - 1]![0]);
      }
    }
    const snapEvents: Array<[number, number]> = [];
    const s2 = await d.client.createSnapshot({ name: unique('snap'), volume: src }, { onProgress: (done, total) => snapEvents.push([done, total]) });
    expect(s2.readyToUse).toBe(true);
    expect(snapEvents[0]![0]).toBe(0);
    expect(snapEvents.at(-1)![0]).toBe(snapEvents.at(-1)![1]);

    // No onProgress: the one-reply JSON create every other client uses.
    const plain = await d.client.createVolume({ name: unique('plain'), fromVolume: src });
    expect(plain.status).toBe('ready');

    // An error after the stream started still comes back as the daemon's BerthError.
    const err = await d.client.createVolume({ name: unique('ghost'), fromSnapshot: 'no-such-snapshot' }, { onProgress: () => undefined }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ kind: 'NotFound' });
  });

  it('berth volume create --from-volume and snapshot create print percentage lines on a pipe, nothing extra with --output json', async () => {
    const { d, src } = await daemonWithData('progress-cli');
    const clone = unique('clone');
    const r = await d.berth(['volume', 'create', clone, '--from-volume', src]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(clone);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^cloning: 0% \(0B of \d/);
    expect(lines.at(-1)).toMatch(/^cloning: 100% \(/);
    const percents = lines.map((l) => Number(/^cloning: (\d+)%/.exec(l)?.[1]));
    expect(percents.every((p, i) => Number.isInteger(p) && (i === 0 || p > percents[i - 1]!))).toBe(true);

    const json = await d.berth(['volume', 'create', unique('clone'), '--from-volume', src, '--output', 'json']);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    expect((JSON.parse(json.stdout) as Volume).status).toBe('ready');

    // A loop snapshot is a copy too.
    const snap = await d.berth(['snapshot', 'create', src, unique('snap')]);
    expect(snap.code, snap.stderr).toBe(0);
    const snapLines = snap.stderr.trim().split('\n');
    expect(snapLines[0]).toMatch(/^snapshotting: 0% \(0B of \d/);
    expect(snapLines.at(-1)).toMatch(/^snapshotting: 100% \(/);

    // A plain create copies nothing and shows nothing.
    const empty = await d.berth(['volume', 'create', unique('empty')]);
    expect(empty.code).toBe(0);
    expect(empty.stderr).toBe('');
  });

  it('berth volume create --from-snapshot draws a cli-progress bar on a terminal', async () => {
    const { d, snap } = await daemonWithData('progress-tty');
    const restored = unique('restored');
    const cmd = [process.execPath, BERTH_JS, '--socket', d.socket, 'volume', 'create', restored, '--from-snapshot', snap]
      .map((a) => `'${a}'`)
      .join(' ');
    // script(1) runs the command on a pty, so stderr.isTTY is true as in a terminal.
    const { stdout } = await run('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, TERM: 'xterm' } });
    expect(stdout).toMatch(/restoring \[[=-]+\] 100% \| \d+\.\dMiB of \d+\.\dMiB/);
    expect(stdout).not.toMatch(/restoring: \d+%/); // not the pipe format
    expect(stdout).toContain(restored);
    expect((await d.client.inspectVolume(restored)).status).toBe('ready');
  });
});
