// The `berth` CLI end to end against a real daemon: the "Done when" scenario with a
// 64MiB ext4 loop volume (mount, findmnt, write, kill -9, restart, unmount, remove, nothing
// left), output formats, and bad inputs that give clear errors and change nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { Volume } from '../../core/types.js';
import { runBerth, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';
import { makeBtrfsPool } from '../helpers/btrfs-pool.js';
import type { Snapshot } from '../../core/types.js';

const roots = useTmpRoots();

/** findmnt's view of a mount point: source device and filesystem type, or null. */
function findmnt(target: string): { source: string; fstype: string } | null {
  try {
    const out = execFileSync('findmnt', ['--json', '--mountpoint', target, '--output', 'SOURCE,FSTYPE'], { encoding: 'utf8' });
    const fs = (JSON.parse(out) as { filesystems: Array<{ source: string; fstype: string }> }).filesystems[0];
    return fs ?? null;
  } catch {
    return null; // findmnt exits 1 when nothing is mounted there
  }
}

/** The structure of a JSON value with every number replaced by 0. */
const shape = (v: unknown): unknown => JSON.parse(JSON.stringify(v), (_k, x: unknown) => (typeof x === 'number' ? 0 : x));

async function json<T>(d: TestDaemon, args: string[]): Promise<T> {
  const r = await d.berth([...args, '--output', 'json']);
  expect(r.stderr, `berth ${args.join(' ')}`).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
}

describe('berth CLI', () => {
  it('Done when: 64MiB ext4 loop volume survives kill -9 with its mount reference, then leaves nothing behind', async () => {
    const root = roots.create('cli-done');
    const d = await startTestDaemon(root);

    const create = await d.berth(['volume', 'create', 'pgdata', '--backend', 'loop', '--size', '64MiB', '--fs', 'ext4']);
    expect(create.stderr).toBe('');
    expect(create.code).toBe(0);
    expect(create.stdout).toMatch(/pgdata/);
    const vol = await json<Volume>(d, ['volume', 'inspect', 'pgdata']);
    expect(vol).toMatchObject({ name: 'pgdata', backend: 'loop', sizeBytes: 64 * 2 ** 20, fsType: 'ext4', status: 'ready' });

    const mount = await d.berth(['volume', 'mount', 'pgdata']);
    expect(mount.code).toBe(0);
    const path = mount.stdout.trim();
    expect(path.startsWith(d.stateRoot)).toBe(true);
    const managed = `${d.stateRoot}/mounts/${vol.id}`;
    const seen = findmnt(managed);
    expect(seen?.fstype).toBe('ext4');
    expect(seen?.source).toMatch(/^\/dev\/loop\d+$/);
    const device = seen!.source;
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(` ${managed} ext4 `);

    writeFileSync(`${path}/hello.txt`, 'written before the crash\n');
    expect(existsSync(`${path}/lost+found`)).toBe(false); // consumers see an empty data/ directory

    await d.kill('SIGKILL');
    await d.start();

    const after = await json<Volume>(d, ['volume', 'inspect', 'pgdata']);
    expect(after.id).toBe(vol.id);
    expect(after.status).toBe('ready');
    expect(after.mounts.map((m) => m.consumer)).toEqual(['cli']);
    expect(after.path).toBe(path);
    expect(findmnt(managed)?.source).toBe(device);
    expect(readFileSync(`${path}/hello.txt`, 'utf8')).toBe('written before the crash\n');
    expect((await d.berth(['volume', 'path', 'pgdata'])).stdout.trim()).toBe(path);

    const un = await d.berth(['volume', 'unmount', 'pgdata']);
    expect(un.code).toBe(0);
    expect(findmnt(managed)).toBeNull();
    const rm = await d.berth(['volume', 'rm', 'pgdata']);
    expect(rm.code).toBe(0);
    expect(await json<Volume[]>(d, ['volume', 'ls'])).toEqual([]);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
    expect(existsSync(`${d.stateRoot}/backends/loop/${vol.id}.img`)).toBe(false);
  });

  it('renders table, json and yaml, and lists backends and status', async () => {
    const d = await startTestDaemon(roots.create('cli-output'));
    expect((await d.berth(['volume', 'create', 'a1', '--label', 'team=x', '-o', 'ignored=no'])).code).not.toBe(0); // dir refuses unknown opts
    expect((await d.berth(['volume', 'create', 'a1', '--label', 'team=x'])).code).toBe(0);
    const table = await d.berth(['volume', 'ls']);
    expect(table.stdout).toMatch(/NAME\s+BACKEND\s+SIZE/);
    expect(table.stdout).toMatch(/a1\s+local/);
    const asYaml = parseYaml((await d.berth(['volume', 'ls', '--output', 'yaml'])).stdout) as Volume[];
    expect(asYaml.map((v) => [v.name, v.labels])).toEqual([['a1', { team: 'x' }]]);
    expect((await json<Volume[]>(d, ['volume', 'ls', '--label', 'team=y']))).toEqual([]);
    const backends = await d.berth(['backend', 'ls']);
    expect(backends.stdout).toMatch(/local\s+dir/);
    expect(backends.stdout).toMatch(/loop\s+loop/);
    expect(backends.stdout).toMatch(/\d+(\.\d)?[KMGT]iB of \d+(\.\d)?[KMGT]iB/); // readable, not "81945816KiB"
    const status = await d.berth(['status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/Ready\s+yes/);
    // What an operator needs: where the daemon listens and keeps its state, and its pid.
    expect(status.stdout).toMatch(new RegExp(`Admin API\\s+${d.socket}`));
    expect(status.stdout).toMatch(new RegExp(`State root\\s+${d.stateRoot}`));
    expect(status.stdout).toMatch(new RegExp(`Config\\s+${d.configFile}`));
    expect(status.stdout).toMatch(new RegExp(`PID\\s+${d.pid()}\\b`));
    const st = await json<{ daemon: { pid: number; adminSocket: string; stateRoot: string; docker: unknown; csi: { endpoint: string } | null } }>(d, ['status']);
    expect(st.daemon).toMatchObject({ pid: d.pid(), adminSocket: d.socket, stateRoot: d.stateRoot });
    const version = await json<{ client: string; daemon: string }>(d, ['version']);
    expect(version.daemon).toBe(version.client);
  });

  it('every command honours --output json|yaml; snapshot and stats tables read as words and sizes', async () => {
    const root = roots.create('cli-formats');
    const d = await startTestDaemon(root);
    expect((await d.berth(['volume', 'create', 'f1', '--backend', 'loop', '--size', '64MiB'])).code).toBe(0);
    const mounted = await json<{ path: string }>(d, ['volume', 'mount', 'f1']);
    const stats = await d.berth(['volume', 'stats', 'f1']);
    expect(stats.stdout).toMatch(/Total\s+\d+(\.\d)?MiB \(\d+ bytes\)/);
    expect(stats.stdout).toMatch(/Filesystem growth\s+done/);
    const snap = await d.berth(['snapshot', 'create', 'f1', 'f1-snap']);
    expect(snap.stdout).toMatch(/Name\s+f1-snap/);
    expect(snap.stdout).toMatch(/Size\s+64MiB \(67108864 bytes\)/);
    for (const args of [['snapshot', 'inspect', 'f1-snap'], ['snapshot', 'ls'], ['volume', 'path', 'f1'], ['volume', 'stats', 'f1'], ['backend', 'ls'], ['status'], ['version']]) {
      const asJson = await d.berth([...args, '--output', 'json']);
      expect([args.join(' '), asJson.code]).toEqual([args.join(' '), 0]);
      expect(() => JSON.parse(asJson.stdout), args.join(' ')).not.toThrow();
      const asYaml = await d.berth([...args, '--output', 'yaml']);
      // Same document either way (numbers such as free bytes may move between the two calls).
      expect(shape(parseYaml(asYaml.stdout)), args.join(' ')).toEqual(shape(JSON.parse(asJson.stdout)));
    }
    // flexvolume install/uninstall too (they print a sentence in table mode).
    const pluginDir = root.path('flex-plugins');
    const installed = await json<{ driver: string; path: string; socket: string }>(d, ['flexvolume', 'install', '--plugin-dir', pluginDir]);
    expect(installed).toMatchObject({ driver: 'berth/berth', path: `${pluginDir}/berth~berth/berth`, socket: d.socket });
    expect(existsSync(installed.path)).toBe(true);
    const removed = parseYaml((await d.berth(['flexvolume', 'uninstall', '--plugin-dir', pluginDir, '--output', 'yaml'])).stdout) as { removed: string };
    expect(removed).toEqual({ removed: `${pluginDir}/berth~berth` });
    expect(existsSync(installed.path)).toBe(false);
    expect(mounted.path.startsWith(d.stateRoot)).toBe(true);
    expect((await d.berth(['snapshot', 'rm', 'f1-snap'])).code).toBe(0);
    expect((await d.berth(['volume', 'rm', 'f1', '--force'])).code).toBe(0);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('gives clear errors for every bad input and changes nothing', async () => {
    const root = roots.create('cli-bad');
    const d = await startTestDaemon(root);
    expect((await d.berth(['volume', 'create', 'keep', '--backend', 'loop', '--size', '64MiB'])).code).toBe(0);
    expect((await d.berth(['volume', 'mount', 'keep'])).code).toBe(0);
    const before = await json<Volume[]>(d, ['volume', 'ls']);

    const bad: Array<{ args: string[]; code: number; err: RegExp }> = [
      { args: ['volume', 'create', 'v', '--size', '12XB'], code: 1, err: /InvalidArgument.*\(field: size\)/ },
      { args: ['volume', 'create', 'v', '--size=-1G'], code: 1, err: /\(field: size\)/ },
      { args: ['volume', 'create', '../etc'], code: 1, err: /\(field: name\)/ },
      { args: ['volume', 'create', 'a/b'], code: 1, err: /\(field: name\)/ },
      { args: ['volume', 'create', 'x'.repeat(129)], code: 1, err: /\(field: name\)/ },
      { args: ['volume', 'create', 'v', '--backend', 'loop', '--size', '64MiB', '--fs', 'ntfs'], code: 1, err: /\(field: fs\)/ },
      { args: ['volume', 'create', 'v', '--backend', 'nope'], code: 1, err: /\(field: backend\)/ },
      { args: ['volume', 'create', 'v', '--backend', 'loop', '--size', '64MiB', '-o', 'bogus=1'], code: 1, err: /\(field: opts\.bogus\)/ },
      { args: ['volume', 'create', 'v', '--backend', 'loop', '--size', '64MiB', '--fs', 'xfs'], code: 1, err: /\(field: size\)/ },
      { args: ['volume', 'create', 'v', '--label', 'novalue'], code: 1, err: /\(field: label\)/ },
      { args: ['volume', 'create', 'v', '--mode', 'tape'], code: 1, err: /\(field: mode\)/ },
      { args: ['volume', 'create', 'keep', '--backend', 'loop', '--size', '128MiB'], code: 1, err: /AlreadyExists/ },
      { args: ['volume', 'mount', 'ghost'], code: 1, err: /NotFound/ },
      { args: ['volume', 'rm', 'keep'], code: 1, err: /InUse/ },
      { args: ['volume', 'expand', 'keep', 'huge'], code: 1, err: /\(field: size\)/ },
      { args: ['volume', 'ls', '--output', 'xml'], code: 2, err: /Invalid values|Choices/ },
      { args: ['volume', 'frobnicate'], code: 2, err: /Unknown argument|frobnicate/ },
      { args: ['volume', 'create'], code: 2, err: /missing <name>\nusage: berth volume create <name>/ },
      { args: ['snapshot', 'create', 'keep'], code: 2, err: /missing <name>\nusage: berth snapshot create <volume> <name>/ },
      { args: ['volume', 'inspect', ''], code: 1, err: /InvalidArgument: ref: must not be empty.*\(field: ref\)/ },
      { args: ['volume', 'rm', ''], code: 1, err: /\(field: ref\)/ },
      { args: ['snapshot', 'create', '', 's'], code: 1, err: /\(field: volume\)/ },
      { args: ['volum', 'ls'], code: 2, err: /unknown command: did you mean "volume"\?/ },
      { args: ['volume', 'ls', '--backend', 'lop'], code: 1, err: /unknown backend "lop".*\(field: backend\)/ },
    ];
    for (const b of bad) {
      const r = await d.berth(b.args);
      expect({ args: b.args.join(' '), code: r.code, stdout: r.stdout }).toEqual({ args: b.args.join(' '), code: b.code, stdout: '' });
      expect(r.stderr, b.args.join(' ')).toMatch(b.err);
    }
    const unreachable = await runBerth(['status'], { socket: root.path('nowhere.sock') });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot reach the berth daemon/);
    const viaEnv = await runBerth(['status'], { env: { BERTH_SOCKET: d.socket } });
    expect(viaEnv.code).toBe(0);
    const badEnvOutput = await runBerth(['status'], { env: { BERTH_SOCKET: d.socket, BERTH_OUTPUT: 'xml' } });
    expect([badEnvOutput.code, badEnvOutput.stderr]).toEqual([2, expect.stringMatching(/BERTH_OUTPUT="xml" is not an output format: use table, json, yaml/)]);

    expect(await json<Volume[]>(d, ['volume', 'ls'])).toEqual(before);
    expect(leftovers(root.dir).loops).toHaveLength(1); // only "keep"'s device
    expect((await d.berth(['volume', 'rm', 'keep', '--force'])).code).toBe(0);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('stops cleanly on SIGTERM: exit 0, socket removed', async () => {
    const d = await startTestDaemon(roots.create('cli-term'));
    expect(existsSync(d.socket)).toBe(true);
    expect(await d.stop()).toBe(0);
    expect(existsSync(d.socket)).toBe(false);
    // A stale socket from a killed daemon does not prevent the next start.
    await d.start();
    await d.kill('SIGKILL');
    expect(existsSync(d.socket)).toBe(true);
    await d.start();
    expect((await d.client.status()).ready).toBe(true);
  });

  it('snapshot ls|create|inspect|rm on btrfs and restore with --from-snapshot; unknown refs are NotFound', async () => {
    const root = roots.create('cli-snap');
    const pool = await makeBtrfsPool({ sizeMiB: 256, prefix: 'berth-cli-snap-pool-' });
    root.defer(() => pool.cleanup());
    const d = await startTestDaemon(root, { backends: { local: { driver: 'dir' }, loop: { driver: 'loop' }, pool: { driver: 'btrfs', pool: pool.pool } } });
    expect((await d.berth(['volume', 'create', 'src', '--backend', 'pool', '--size', '64MiB'])).code).toBe(0);
    const path = (await d.berth(['volume', 'mount', 'src'])).stdout.trim();
    writeFileSync(`${path}/v1.txt`, 'one');
    const snap = await json<Snapshot>(d, ['snapshot', 'create', 'src', 'before']);
    expect(snap).toMatchObject({ name: 'before', readyToUse: true });
    expect(snap.id).toMatch(/^snap-/);
    const table = await d.berth(['snapshot', 'ls', '--volume', 'src']);
    expect(table.stdout).toMatch(/before/);
    expect((await json<Snapshot>(d, ['snapshot', 'inspect', 'before'])).id).toBe(snap.id);
    expect((await d.berth(['volume', 'create', 'restored', '--backend', 'pool', '--size', '64MiB', '--from-snapshot', 'before'])).code).toBe(0);
    const rpath = (await d.berth(['volume', 'mount', 'restored'])).stdout.trim();
    expect(readFileSync(`${rpath}/v1.txt`, 'utf8')).toBe('one');

    const noVolume = await d.berth(['snapshot', 'create', 'ghost', 'nope']);
    expect([noVolume.code, /error: NotFound: /.test(noVolume.stderr)]).toEqual([1, true]);
    const missing = await d.berth(['snapshot', 'rm', 'ghost']);
    expect([missing.code, /NotFound/.test(missing.stderr)]).toEqual([1, true]);

    expect((await d.berth(['snapshot', 'rm', 'before'])).code).toBe(0);
    expect(await json<Snapshot[]>(d, ['snapshot', 'ls'])).toEqual([]);
    for (const v of ['restored', 'src']) expect((await d.berth(['volume', 'rm', v, '--force'])).code).toBe(0);
  });
});
