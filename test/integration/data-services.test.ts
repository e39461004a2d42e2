// Snapshot -> restore -> clone -> expand end to end: a real daemon (dist/berth.js) with a btrfs
// backend on a loop-image pool (and a loop backend), driven through the admin API, the `berth`
// CLI, Docker and CSI. Data is written and read through the paths the daemon hands out, as a
// consumer would.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../../core/errors.js';
import { makeBtrfsPool, writeMiB } from '../helpers/btrfs-pool.js';
import { createCsiClient, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, dockerRun, TEST_IMAGE, uniqueName } from '../helpers/docker.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const MiB = 1024 * 1024;
const roots = useTmpRoots();
const unique = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

interface BtrfsEnv {
  readonly d: TestDaemon;
  readonly root: TmpRoot;
  /** Docker driver name when Docker is served, else ''. */
  readonly driver: string;
  /** Containers removed in cleanup. */
  readonly containers: string[];
}

/**
 * A daemon whose default backend "pool" is btrfs on a fresh loop-image filesystem; with
 * `docker` it also serves Docker under a driver name of this suite's pool, at the name's one
 * socket (test/helpers/docker-drivers.ts). Cleanup (LIFO): containers and Docker volumes, the
 * daemon, the pool, the driver name and whatever is left at its socket.
 */
async function btrfsEnv(label: string, o: { docker?: boolean; csi?: boolean } = {}): Promise<BtrfsEnv> {
  const root = roots.create(label);
  let driver = '';
  let socket = '';
  if (o.docker) {
    const held = await acquireDriver('dataServices');
    root.defer(held.release);
    driver = held.driver;
    socket = held.socket!;
  }
  const pool = await makeBtrfsPool({ prefix: `berth-${label}-pool-` });
  root.defer(() => pool.cleanup());
  const d = await startTestDaemon(root, {
    backends: { local: { driver: 'dir' }, pool: { driver: 'btrfs', pool: pool.pool }, loop: { driver: 'loop' } },
    defaultBackend: 'pool',
    csi: o.csi ?? false,
    ...(driver ? { config: { docker: { enabled: true, driverName: driver, socket } } } : {}),
  });
  const containers: string[] = [];
  if (driver) {
    root.defer(() => cleanupDocker({
      driver,
      containers,
      stopped: d.pid() === null,
      release: (v) => d.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
        if (e.kind !== 'NotFound') throw e;
      }),
    }));
  }
  return { d, root, driver, containers };
}

const btrfsDaemon = async (label: string): Promise<TestDaemon> => (await btrfsEnv(label)).d;

async function expectKind(p: Promise<unknown>, kind: string): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err, `expected ${kind}`).toBeInstanceOf(BerthError);
  expect((err as BerthError).kind).toBe(kind);
}

/** One backend under the admin-API flow: sizes chosen so that size < write < expanded size. */
interface FlowCase {
  readonly title: string;
  readonly backend: 'pool' | 'loop';
  readonly driver: 'btrfs' | 'loop';
  readonly fs?: 'xfs';
  readonly sizeMiB: number;
  readonly writeMiB: number;
  readonly expandMiB: number;
  /** Error text of a write past the size: EDQUOT for qgroups, ENOSPC for a full filesystem. */
  readonly full: RegExp;
}

const FLOW_CASES: readonly FlowCase[] = [
  { title: 'btrfs', backend: 'pool', driver: 'btrfs', sizeMiB: 32, writeMiB: 48, expandMiB: 128, full: /Disk quota exceeded/ },
  // xfs: mkfs.xfs refuses under 300 MiB; grows online while mounted.
  { title: 'loop xfs', backend: 'loop', driver: 'loop', fs: 'xfs', sizeMiB: 320, writeMiB: 400, expandMiB: 512, full: /No space left/ },
];

/** One backend as a user asks for it through the CLI or Docker options (`--key=value` / `-o key=value`). */
interface UserCase {
  readonly title: string;
  readonly backend: 'pool' | 'loop';
  readonly driver: 'btrfs' | 'loop';
  readonly fs?: 'xfs';
  readonly cliCreate: readonly string[];
  readonly sizeMiB: number;
  readonly cloneMiB: number;
  /** More than fits in sizeMiB, less than fits in expandMiB. */
  readonly writeMiB: number;
  readonly expandMiB: number;
}

const USER_CASES: readonly UserCase[] = [
  { title: 'btrfs', backend: 'pool', driver: 'btrfs', cliCreate: [], sizeMiB: 32, cloneMiB: 48, writeMiB: 48, expandMiB: 128 },
  // xfs: mkfs.xfs refuses under 300 MiB; xfs (unlike ext4 here) grows while mounted.
  { title: 'loop xfs', backend: 'loop', driver: 'loop', fs: 'xfs', cliCreate: ['--backend=loop', '--fs=xfs'], sizeMiB: 320, cloneMiB: 352, writeMiB: 400, expandMiB: 512 },
];

describe('data services through a real daemon', () => {
  it.each(FLOW_CASES)('$title: snapshot, restore, clone and online expand through the admin API', async (k) => {
    const d = await btrfsDaemon(`data-api-${k.driver}`);
    const c = d.client;
    const [src, snap, restored, clone] = ['src', 'snap', 'restored', 'clone'].map(unique) as [string, string, string, string];
    const size = k.sizeMiB * MiB;

    const backends = await c.backends();
    expect(backends.find((b) => b.name === k.backend)).toMatchObject({
      driver: k.driver, capabilities: { snapshots: true, clones: true, expansion: 'online', sizeEnforced: true },
    });

    await c.createVolume({ name: src, size, backend: k.backend, ...(k.fs ? { fs: k.fs } : {}) });
    const { path: srcPath } = await c.mount(src, { consumer: 'test:src' });
    await writeFile(join(srcPath, 'before.txt'), 'before');
    await writeFile(join(srcPath, 'changed.txt'), 'v1');

    const s = await c.createSnapshot({ name: snap, volume: src });
    expect(s).toMatchObject({ name: snap, readyToUse: true, sizeBytes: size, backend: k.backend });
    expect((await c.listSnapshots({ volume: src })).map((x) => x.name)).toEqual([snap]);
    await writeFile(join(srcPath, 'after.txt'), 'after');
    await writeFile(join(srcPath, 'changed.txt'), 'v2');

    // Restore: the data written before the snapshot, not after.
    // Backend and fs named explicitly here; the CLI and Docker tests below rely on the default (the source's).
    const r = await c.createVolume({ name: restored, fromSnapshot: snap, backend: k.backend, ...(k.fs ? { fs: k.fs } : {}) });
    expect(r).toMatchObject({ source: { kind: 'snapshot', id: s.id }, sizeBytes: size, backend: k.backend });
    const { path: rPath } = await c.mount(restored, { consumer: 'test:restored' });
    expect((await readdir(rPath)).sort()).toEqual(['before.txt', 'changed.txt']);
    expect(await readFile(join(rPath, 'changed.txt'), 'utf8')).toBe('v1');

    // Clone: a copy of the source as it is now, independent in both directions.
    const cl = await c.createVolume({ name: clone, fromVolume: src, size: size + 16 * MiB, backend: k.backend });
    expect(cl.source?.kind).toBe('volume');
    const { path: cPath } = await c.mount(clone, { consumer: 'test:clone' });
    expect(await readFile(join(cPath, 'changed.txt'), 'utf8')).toBe('v2');
    await writeFile(join(cPath, 'changed.txt'), 'clone');
    await writeFile(join(srcPath, 'src-only.txt'), 'x');
    expect(await readFile(join(srcPath, 'changed.txt'), 'utf8')).toBe('v2');
    expect(await readdir(cPath)).not.toContain('src-only.txt');

    // Size enforced; online expand (still mounted) lifts it for the same write.
    const refused = await writeMiB(join(srcPath, 'big'), k.writeMiB);
    expect(refused.ok).toBe(false);
    expect(refused.stderr).toMatch(k.full);
    await unlink(join(srcPath, 'big'));
    await expectKind(c.expand(src, size / 2), 'OutOfRange'); // no shrinking
    const ex = await c.expand(src, `${k.expandMiB}MiB`);
    expect(ex.volume.sizeBytes).toBe(k.expandMiB * MiB);
    expect(ex.pendingFsGrowth).toBe(false);
    expect((await writeMiB(join(srcPath, 'big'), k.writeMiB)).ok).toBe(true);
    const stats = await c.stats(src);
    expect(stats.totalBytes).toBeGreaterThan(k.writeMiB * MiB);
    expect(stats.totalBytes).toBeLessThanOrEqual(k.expandMiB * MiB);
    expect(stats.usedBytes).toBeGreaterThanOrEqual(k.writeMiB * MiB);

    // Deleting the snapshot a volume was restored from is allowed; the restored volume keeps its data.
    await c.deleteSnapshot(snap);
    await expectKind(c.inspectSnapshot(snap), 'NotFound');
    expect(await readFile(join(rPath, 'before.txt'), 'utf8')).toBe('before');

    for (const [name, consumer] of [[restored, 'test:restored'], [clone, 'test:clone'], [src, 'test:src']] as const) {
      await c.unmount(name, { consumer });
      await c.removeVolume(name);
    }
    expect(await c.listVolumes({ backend: k.backend })).toEqual([]);
  });
});

describe('data services through the berth CLI, and btrfs specifics', () => {
  it.each(USER_CASES)('the berth CLI on $title: snapshot a volume holding data, restore it, clone it, grow it online', async (k) => {
    const d = await btrfsDaemon(`data-cli-${k.driver}`);
    const [vol, snap, fromSnap, fromVol] = ['vol', 'snap', 'fromsnap', 'fromvol'].map(unique) as [string, string, string, string];
    const ok = async (args: string[]) => {
      const res = await d.berth(args);
      expect(res.code, `berth ${args.join(' ')}\n${res.stderr}`).toBe(0);
      return res.stdout;
    };

    await ok(['volume', 'create', vol, '--size', `${k.sizeMiB}MiB`, ...k.cliCreate]);
    expect((await d.client.inspectVolume(vol)).backend).toBe(k.backend);
    const { path } = await d.client.mount(vol, { consumer: 'test:cli' });
    await writeFile(join(path, 'data.txt'), 'hello');

    await ok(['snapshot', 'create', vol, snap]);
    expect(await ok(['snapshot', 'ls'])).toContain(snap);
    const listed = JSON.parse(await ok(['snapshot', 'ls', '--volume', vol, '--output', 'json'])) as Array<{ name: string }>;
    expect(listed.map((x) => x.name)).toEqual([snap]);
    await writeFile(join(path, 'data.txt'), 'changed after the snapshot');

    // Restores and clones inherit the source's backend and filesystem.
    await ok(['volume', 'create', fromSnap, '--from-snapshot', snap]);
    await ok(['volume', 'create', fromVol, '--from-volume', vol, '--size', `${k.cloneMiB}MiB`]);
    const { path: snapPath } = await d.client.mount(fromSnap, { consumer: 'test:cli' });
    expect(await readFile(join(snapPath, 'data.txt'), 'utf8')).toBe('hello');
    const { path: clonePath } = await d.client.mount(fromVol, { consumer: 'test:cli' });
    expect(await readFile(join(clonePath, 'data.txt'), 'utf8')).toBe('changed after the snapshot');
    await writeFile(join(clonePath, 'data.txt'), 'clone');
    expect(await readFile(join(path, 'data.txt'), 'utf8')).toBe('changed after the snapshot');
    for (const name of [fromSnap, fromVol]) {
      expect(await d.client.inspectVolume(name)).toMatchObject({ backend: k.backend, fsType: k.fs ?? null });
      await d.client.unmount(name, { consumer: 'test:cli' });
    }
    expect((await d.client.inspectVolume(fromVol)).sizeBytes).toBe(k.cloneMiB * MiB);

    // Online: still mounted; a write the old size refused fits after the expand, without a remount.
    expect((await writeMiB(join(path, 'big'), k.writeMiB)).ok).toBe(false);
    await unlink(join(path, 'big'));
    await ok(['volume', 'expand', vol, `${k.expandMiB}MiB`]);
    expect((await d.client.inspectVolume(vol)).sizeBytes).toBe(k.expandMiB * MiB);
    expect((await writeMiB(join(path, 'big'), k.writeMiB)).ok).toBe(true);
    expect((await d.client.stats(vol)).totalBytes).toBeGreaterThan(k.writeMiB * MiB);
    const bad = await d.berth(['volume', 'expand', vol, '8MiB']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/shrink|size/i);

    await ok(['snapshot', 'rm', snap]);
    expect(JSON.parse(await ok(['snapshot', 'ls', '--output', 'json']))).toEqual([]);
    await d.client.unmount(vol, { consumer: 'test:cli' });
    for (const name of [fromSnap, fromVol, vol]) await ok(['volume', 'rm', name]);
  });

  it('volumes, limits and snapshots survive kill -9 and a restart (quotas already on, reconcile keeps them)', async () => {
    const d = await btrfsDaemon('data-restart');
    const [vol, snap, restored] = ['vol', 'snap', 'restored'].map(unique) as [string, string, string];
    await d.client.createVolume({ name: vol, size: '16MiB' });
    const { path } = await d.client.mount(vol, { consumer: 'test:restart' });
    await writeFile(join(path, 'kept.txt'), 'kept');
    await d.client.createSnapshot({ name: snap, volume: vol });

    await d.kill('SIGKILL');
    await d.start();

    expect((await d.client.inspectVolume(vol)).mounts.map((m) => m.consumer)).toEqual(['test:restart']);
    expect((await d.client.listSnapshots({ volume: vol })).map((s) => s.name)).toEqual([snap]);
    expect(await readFile(join(path, 'kept.txt'), 'utf8')).toBe('kept');
    expect((await writeMiB(join(path, 'big'), 32)).ok).toBe(false); // the limit is still there
    await d.client.createVolume({ name: restored, fromSnapshot: snap });
    const { path: rPath } = await d.client.mount(restored, { consumer: 'test:restart' });
    expect(await readFile(join(rPath, 'kept.txt'), 'utf8')).toBe('kept');
    expect((await d.client.stats(vol)).totalBytes).toBe(16 * MiB);
  });

  it('refuses a volume option btrfs does not take, and block mode, naming the field', async () => {
    const d = await btrfsDaemon('data-bad');
    const err = await d.client.createVolume({ name: unique('bad'), options: { compress: 'zstd' } }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ kind: 'InvalidArgument', field: 'opts.compress' });
    // Named explicitly: without a backend, a block request goes to a backend that can make one (loop).
    const block = await d.client.createVolume({ name: unique('blk'), backend: 'pool', mode: 'block' }).then(() => null, (e: unknown) => e);
    expect(block).toMatchObject({ kind: 'InvalidArgument', field: 'mode' });
  });
});

describe('data services through Docker', () => {
  it.each(USER_CASES)('$title: -o fromSnapshot / -o fromVolume restore and clone; a running container sees an online expand at once', async (k) => {
    const image = TEST_IMAGE; // engine and image: test/helpers/global-setup.ts
    const { d, driver, containers } = await btrfsEnv(`data-docker-${k.driver}`, { docker: true });
    const [src, snap, restored, clone] = ['src', 'snap', 'restored', 'clone'].map(uniqueName) as [string, string, string, string];
    const container = () => {
      const n = uniqueName('berth-data');
      containers.push(n);
      return n;
    };
    const runIn = (vol: string, script: string) =>
      dockerRun(['run', '--network', 'none', '--rm', '--name', container(), '-v', `${vol}:/data`, image, 'sh', '-c', script]);

    await docker(['volume', 'create', '-d', driver, '-o', `size=${k.sizeMiB}MiB`, ...k.cliCreate.flatMap((o) => ['-o', o.replace(/^--/, '')]), src]);
    expect((await d.client.inspectVolume(src)).backend).toBe(k.backend);
    expect((await runIn(src, 'echo before > /data/f && sync')).code).toBe(0);
    await d.client.createSnapshot({ name: snap, volume: src });
    expect((await runIn(src, 'echo after > /data/f && echo new > /data/g')).code).toBe(0);

    await docker(['volume', 'create', '-d', driver, '-o', `fromSnapshot=${snap}`, restored]);
    expect((await runIn(restored, 'cat /data/f; ls /data')).stdout.trim().split('\n')).toEqual(['before', 'f']);
    await docker(['volume', 'create', '-d', driver, '-o', `fromVolume=${src}`, clone]);
    expect((await runIn(clone, 'echo clone > /data/f && cat /data/g')).stdout.trim()).toBe('new');
    expect((await runIn(src, 'cat /data/f')).stdout.trim()).toBe('after');
    expect(await d.client.inspectVolume(clone)).toMatchObject({ backend: k.backend, fsType: k.fs ?? null });

    // A container keeps the volume mounted; a write past the limit fails inside it, the
    // expand happens while it runs, and the same write then succeeds without a remount.
    const holder = container();
    await docker(['run', '--network', 'none', '-d', '--name', holder, '-v', `${src}:/data`, image, 'sleep', '600']);
    const fill = () => dockerRun(['exec', holder, 'dd', 'if=/dev/zero', 'of=/data/big', 'bs=1M', `count=${k.writeMiB}`, 'conv=fsync']);
    const refused = await fill();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/quota|space/i);
    await docker(['exec', holder, 'rm', '-f', '/data/big']);
    expect((await d.berth(['volume', 'expand', src, `${k.expandMiB}MiB`])).code).toBe(0);
    expect((await fill()).code).toBe(0);
    expect((await d.client.stats(src)).totalBytes).toBeGreaterThan(k.writeMiB * MiB);
    await docker(['rm', '-f', holder]);
  });
});

describe('online growth seen from inside a container (loop)', () => {
  /** Size in KiB of the filesystem holding /data, as `df` inside the container reports it. */
  const dfKiB = async (container: string): Promise<number> => {
    const out = await docker(['exec', container, 'df', '-k', '/data']);
    const cols = out.trim().split('\n').at(-1)!.trim().split(/\s+/);
    return Number(cols[1]);
  };

  it('an xfs volume grown while a container writes shows the new size in df without a remount; ext4 grows at the next mount', async () => {
    const image = TEST_IMAGE; // engine and image: test/helpers/global-setup.ts
    const { d, driver, containers } = await btrfsEnv('data-df', { docker: true });
    const name = (p: string) => {
      const n = uniqueName(p);
      containers.push(n);
      return n;
    };
    const [xfsVol, ext4Vol] = [uniqueName('xfs'), uniqueName('ext4')];

    await docker(['volume', 'create', '-d', driver, '-o', 'backend=loop', '-o', 'fs=xfs', '-o', 'size=320MiB', xfsVol]);
    const writer = name('berth-writer');
    // Keeps writing 1 MiB files (rotating over 64 of them) for as long as it runs.
    await docker(['run', '--network', 'none', '-d', '--name', writer, '-v', `${xfsVol}:/data`, image, 'sh', '-c',
      'i=0; while true; do dd if=/dev/zero of=/data/f$i bs=1M count=1 2>/dev/null; i=$(( (i+1) % 64 )); done']);
    const before = await dfKiB(writer);
    expect(before).toBeLessThan(320 * 1024);
    const res = await d.berth(['volume', 'expand', xfsVol, '640MiB', '--output', 'json']);
    expect(res.code, res.stderr).toBe(0);
    const after = await dfKiB(writer);
    expect(after).toBeGreaterThan(before + 280 * 1024);
    expect(after).toBeLessThanOrEqual(640 * 1024);
    expect(await docker(['inspect', '-f', '{{.State.Running}}', writer])).toBe('true'); // never stopped
    await docker(['rm', '-f', writer]);

    await docker(['volume', 'create', '-d', driver, '-o', 'backend=loop', '-o', 'size=64MiB', ext4Vol]);
    const holder = name('berth-holder');
    await docker(['run', '--network', 'none', '-d', '--name', holder, '-v', `${ext4Vol}:/data`, image, 'sleep', '600']);
    const ext4Before = await dfKiB(holder);
    const ex = await d.client.expand(ext4Vol, '128MiB');
    expect(ex.pendingFsGrowth).toBe(true); // said honestly: ext4 cannot grow while mounted here
    expect(await dfKiB(holder)).toBe(ext4Before);
    await docker(['rm', '-f', holder]); // the last reference: unmounted
    const out = await docker(['run', '--network', 'none', '--rm', '--name', name('berth-reader'), '-v', `${ext4Vol}:/data`, image, 'df', '-k', '/data']);
    const grown = Number(out.trim().split('\n').at(-1)!.trim().split(/\s+/)[1]);
    expect(grown).toBeGreaterThan(ext4Before + 50 * 1024);
  });
});

describe('data services on btrfs through CSI', () => {
  it('CreateSnapshot, content sources (snapshot and volume), ListSnapshots, ControllerExpandVolume, DeleteSnapshot', async () => {
    const { d, root } = await btrfsEnv('data-csi', { csi: true });
    const c: CsiClient = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());
    const caps = (await c.controller('ControllerGetCapabilities')).capabilities.map((x: any) => x.rpc.type);
    expect(caps).toEqual(expect.arrayContaining(['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME', 'EXPAND_VOLUME']));

    const published: Array<{ id: string; staging: string; target: string }> = [];
    const publish = async (volumeId: string, name: string): Promise<string> => {
      const staging = root.path('kubelet', 'staging', name);
      const target = root.path('kubelet', 'pods', name, 'volume');
      await c.node('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: mountCap() });
      await c.node('NodePublishVolume', {
        volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: mountCap(),
      });
      published.push({ id: volumeId, staging, target });
      return target;
    };
    root.defer(async () => {
      for (const p of published.reverse()) {
        await c.node('NodeUnpublishVolume', { volume_id: p.id, target_path: p.target }).catch(() => {});
        await c.node('NodeUnstageVolume', { volume_id: p.id, staging_target_path: p.staging }).catch(() => {});
      }
    });
    const create = (name: string, extra: object = {}) => c.controller('CreateVolume', {
      name, capacity_range: { required_bytes: String(32 * MiB) }, volume_capabilities: [mountCap()], ...extra,
    }).then((r: any) => r.volume);

    const src = await create(unique('pvc-src'));
    expect(Number(src.capacity_bytes)).toBe(32 * MiB);
    const srcPath = await publish(src.volume_id, 'src');
    await writeFile(join(srcPath, 'f.txt'), 'before');

    const snapReq = { source_volume_id: src.volume_id, name: unique('snapshot') };
    const { snapshot } = await c.controller('CreateSnapshot', snapReq);
    expect(snapshot).toMatchObject({ source_volume_id: src.volume_id, ready_to_use: true });
    expect((await c.controller('CreateSnapshot', snapReq)).snapshot.snapshot_id).toBe(snapshot.snapshot_id); // idempotent
    await writeFile(join(srcPath, 'f.txt'), 'after');

    const listed = await c.controller('ListSnapshots', { source_volume_id: src.volume_id });
    expect(listed.entries.map((e: any) => e.snapshot.snapshot_id)).toEqual([snapshot.snapshot_id]);

    const restored = await create(unique('pvc-restored'), { volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } });
    expect(restored.content_source.snapshot.snapshot_id).toBe(snapshot.snapshot_id);
    expect(await readFile(join(await publish(restored.volume_id, 'restored'), 'f.txt'), 'utf8')).toBe('before');

    const clone = await create(unique('pvc-clone'), { volume_content_source: { volume: { volume_id: src.volume_id } } });
    const clonePath = await publish(clone.volume_id, 'clone');
    expect(await readFile(join(clonePath, 'f.txt'), 'utf8')).toBe('after');
    await writeFile(join(clonePath, 'f.txt'), 'clone');
    expect(await readFile(join(srcPath, 'f.txt'), 'utf8')).toBe('after');

    // Online: the volume stays published while it grows; the same write fails before and works after.
    expect((await writeMiB(join(srcPath, 'big'), 48)).ok).toBe(false);
    await unlink(join(srcPath, 'big'));
    const ex = await c.controller('ControllerExpandVolume', { volume_id: src.volume_id, capacity_range: { required_bytes: String(128 * MiB) } });
    expect(ex).toMatchObject({ capacity_bytes: String(128 * MiB), node_expansion_required: false });
    expect((await writeMiB(join(srcPath, 'big'), 48)).ok).toBe(true);
    const stats = await c.node('NodeGetVolumeStats', { volume_id: src.volume_id, volume_path: srcPath });
    const bytes = stats.usage.find((u: any) => u.unit === 'BYTES');
    expect(Number(bytes.total)).toBe(128 * MiB);

    // Deleting the snapshot leaves the restored volume alone.
    await c.controller('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
    await c.controller('DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
    expect((await c.controller('ListSnapshots', { source_volume_id: src.volume_id })).entries).toEqual([]);
    expect((await d.client.inspectVolume(restored.volume_id)).status).toBe('ready');
  });
});
