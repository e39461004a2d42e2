/**
 * Issue 9, "Targets", against a real daemon: the reproductions through the `berth` CLI
 * (admin API) and through CSI, with real tmpfs mounts, bind mounts, loop devices and
 * symlinks. Every foreign mount and symlink is a stand-in under the test's own root; the
 * only system path used is one that cannot be created (/proc/<nonexistent>/...), and only
 * to see it refused.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { Volume } from '../../core/types.js';
import { createCsiClient, grpcError, mountCap } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

/** The mounts stacked at exactly `path`, bottom first, as the kernel lists them. */
const mountsAt = (path: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === path).map((l) => l.split(' - ')[1]!.split(' ')[0]!);

/** A tmpfs holding f=`content` at `dir`: a mount berth did not make. */
function foreignTmpfs(dir: string, content = 'precious'): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  writeFileSync(join(dir, 'f'), content);
}

async function inspect(d: TestDaemon, ref: string): Promise<Volume> {
  const r = await d.berth(['volume', 'inspect', ref, '--output', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Volume;
}

describe('targets through the berth CLI', () => {
  it('issue 9 repro 1: unmount leaves a tmpfs that was at the target, with its data and its directory', async () => {
    const root = roots.create('tgt-premnt');
    const d = await startTestDaemon(root);
    const premnt = root.path('s', 'premnt');
    foreignTmpfs(premnt);
    expect((await d.berth(['volume', 'create', 'v1'])).code).toBe(0);
    const m = await d.berth(['volume', 'mount', 'v1', '--consumer', 'a', '--target', premnt]);
    expect([m.code, m.stdout.trim()]).toEqual([0, premnt]);
    expect(mountsAt(premnt)).toEqual(['tmpfs', expect.any(String)]); // the volume's bind on top
    const u = await d.berth(['volume', 'unmount', 'v1', '--consumer', 'a']);
    expect(u.code, u.stderr).toBe(0);
    expect(mountsAt(premnt)).toEqual(['tmpfs']);
    expect(readFileSync(join(premnt, 'f'), 'utf8')).toBe('precious');
    execFileSync('umount', [premnt]);
    expect(statSync(premnt).isDirectory()).toBe(true);
  });

  it('issue 9 repro 2: a symlink target (or one through a symlink) is refused naming target, and nothing is mounted', async () => {
    const root = roots.create('tgt-symlink');
    const d = await startTestDaemon(root);
    const victim = root.path('s', 'victim');
    mkdirSync(victim, { recursive: true });
    symlinkSync(victim, root.path('s', 'sl'));
    expect((await d.berth(['volume', 'create', 'v1'])).code).toBe(0);
    for (const target of [root.path('s', 'sl'), root.path('s', 'sl', 'deeper')]) {
      const r = await d.berth(['volume', 'mount', 'v1', '--consumer', 's', '--target', target]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/InvalidArgument: target: .*symbolic link.*\(field: target\)/);
    }
    expect(mountsAt(victim)).toEqual([]);
    expect(existsSync(join(victim, 'deeper'))).toBe(false);
    expect((await inspect(d, 'v1')).mounts).toEqual([]);
  });

  it('refuses system paths, the state root and paths outside targets.allowedPrefixes before touching anything', async () => {
    const root = roots.create('tgt-rules');
    const d = await startTestDaemon(root, { config: { targets: { allowedPrefixes: [root.path('allowed')] } } });
    expect((await d.berth(['volume', 'create', 'v1'])).code).toBe(0);
    const cases: Array<[string, RegExp]> = [
      ['/proc/berth-test-never/x', /under \/proc, a system directory/], // cannot be created, whatever happened
      ['/proc', /"\/proc" is a system directory/],
      [join(d.stateRoot, 'mounts', 'x'), /inside berth's state root/],
      [root.path('elsewhere', 'x'), /not below an allowed target directory: .*allows targets below .*allowed/],
      [root.path('allowed'), /not below an allowed target directory/],
      ['relative/path', /must be an absolute path/],
    ];
    // The admin API (what the CLI and the FlexVolume driver call) for each, the CLI for one.
    for (const [target, why] of cases) {
      await expect(d.client.mount('v1', { consumer: 'c', target }), target)
        .rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target', message: expect.stringMatching(why) });
    }
    const r = await d.berth(['volume', 'mount', 'v1', '--consumer', 'c', '--target', '/proc/berth-test-never/x']);
    expect([r.code, r.stdout]).toEqual([1, '']);
    expect(r.stderr).toMatch(/InvalidArgument: target: .*system directory.*\(field: target\)/);
    expect(existsSync(root.path('elsewhere'))).toBe(false);
    expect(existsSync(join(d.stateRoot, 'mounts', 'x'))).toBe(false);
    expect(await inspect(d, 'v1')).toMatchObject({ mounts: [], path: null });
    const ok = await d.berth(['volume', 'mount', 'v1', '--consumer', 'c', '--target', root.path('allowed', 'x')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await d.berth(['volume', 'unmount', 'v1', '--consumer', 'c'])).code).toBe(0);
    expect(existsSync(root.path('allowed', 'x'))).toBe(false);
  });

  it('refuses to unmount under a mount berth did not make, keeps the reference, and finishes once it is gone', async () => {
    const root = roots.create('tgt-covered');
    const d = await startTestDaemon(root);
    const target = root.path('mnt', 'c');
    expect((await d.berth(['volume', 'create', 'v1', '--backend', 'loop', '--size', '64MiB'])).code).toBe(0);
    expect((await d.berth(['volume', 'mount', 'v1', '--consumer', 'a', '--target', target])).code).toBe(0);
    foreignTmpfs(target, 'on top');
    const r = await d.berth(['volume', 'unmount', 'v1', '--consumer', 'a']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/FailedPrecondition: target: ".*\/mnt\/c" is covered by a mount berth did not make \(tmpfs tmpfs.*\(field: target\)/);
    expect(mountsAt(target)).toEqual(['ext4', 'tmpfs']);
    expect(readFileSync(join(target, 'f'), 'utf8')).toBe('on top');
    expect((await inspect(d, 'v1')).mounts).toMatchObject([{ consumer: 'a', target }]);
    execFileSync('umount', [target]);
    expect((await d.berth(['volume', 'unmount', 'v1', '--consumer', 'a'])).code).toBe(0);
    expect(existsSync(target)).toBe(false);
    expect((await d.berth(['volume', 'rm', 'v1'])).code).toBe(0);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('after a kill -9 between the bind and its record, the restart takes down only berth\'s bind and keeps the directory', async () => {
    const root = roots.create('tgt-crash');
    const d = await startTestDaemon(root);
    const target = root.path('mnt', 'crash');
    foreignTmpfs(target, 'under');
    expect((await d.berth(['volume', 'create', 'v1', '--backend', 'loop', '--size', '64MiB'])).code).toBe(0);
    expect((await d.berth(['volume', 'mount', 'v1', '--consumer', 'keep'])).code).toBe(0);
    const made = root.path('mnt', 'made');
    expect((await d.berth(['volume', 'mount', 'v1', '--consumer', 'a', '--target', target])).code).toBe(0);
    expect((await d.berth(['volume', 'mount', 'v1', '--consumer', 'b', '--target', made])).code).toBe(0);
    const path = (await inspect(d, 'v1')).path!;
    await d.kill('SIGKILL');
    // What a kill -9 right after the binds leaves: pending references without the mount (or
    // whether berth made the target) on record, and a second bind stacked by a retry.
    const db = new Database(join(d.stateRoot, 'state.db'));
    db.prepare(`UPDATE mount_refs SET state = 'pending', target_created = 0, bind_mount_id = NULL, bind_dev = NULL, bind_root = NULL
      WHERE consumer IN ('a', 'b')`).run();
    db.close();
    execFileSync('mount', ['--bind', path, target]);
    expect(mountsAt(target)).toEqual(['tmpfs', 'ext4', 'ext4']);
    await d.start();
    expect(mountsAt(target)).toEqual(['tmpfs']);
    expect(readFileSync(join(target, 'f'), 'utf8')).toBe('under');
    expect(mountsAt(made)).toEqual([]);
    expect(statSync(made).isDirectory()).toBe(true); // berth cannot prove it made it: kept
    expect((await inspect(d, 'v1')).mounts.map((m) => m.consumer)).toEqual(['keep']);
    execFileSync('umount', [target]);
    expect((await d.berth(['volume', 'rm', 'v1', '--force'])).code).toBe(0);
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
  });
});

describe('targets through CSI', () => {
  it('issue 9 repros: target_path = staging_target_path is INVALID_ARGUMENT; a tmpfs at target_path and symlinked targets are left alone', async () => {
    const root = roots.create('tgt-csi');
    const d = await startTestDaemon(root, { csi: true });
    const c = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());
    const vol = (await c.controller('CreateVolume', {
      name: 'same', volume_capabilities: [mountCap()], parameters: { backend: 'loop' }, capacity_range: { required_bytes: String(64 * 2 ** 20) },
    })).volume;
    const staging = root.path('kubelet', 'staging', 'same');
    const base = { volume_id: vol.volume_id, volume_capability: mountCap(), staging_target_path: staging };
    await c.node('NodeStageVolume', base);
    expect(mountsAt(staging)).toEqual(['ext4']);
    writeFileSync(join(staging, 'data'), 'staged');

    // target_path = staging_target_path: refused, and unpublishing it takes nothing down.
    for (const target_path of [staging, join(staging, 'inner')]) {
      const e = await grpcError(c.node('NodePublishVolume', { ...base, target_path }));
      expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^target_path: .*staging_target_path/)]);
    }
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: staging });
    expect(mountsAt(staging)).toEqual(['ext4']);
    expect(readFileSync(join(staging, 'data'), 'utf8')).toBe('staged');

    // A tmpfs that was at target_path survives publish + unpublish with its data.
    const target = root.path('kubelet', 'pods', 'p1', 'mount');
    foreignTmpfs(target);
    await c.node('NodePublishVolume', { ...base, target_path: target });
    expect(readFileSync(join(target, 'data'), 'utf8')).toBe('staged');
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: target });
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: target });
    expect(mountsAt(target)).toEqual(['tmpfs']);
    expect(readFileSync(join(target, 'f'), 'utf8')).toBe('precious');
    execFileSync('umount', [target]);

    // A symlinked target_path is refused; what it points to stays unmounted.
    const victim = root.path('victim');
    mkdirSync(victim);
    symlinkSync(victim, root.path('kubelet', 'pods', 'p1', 'link'));
    const e = await grpcError(c.node('NodePublishVolume', { ...base, target_path: root.path('kubelet', 'pods', 'p1', 'link') }));
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^target_path: .*symbolic link/)]);
    expect(mountsAt(victim)).toEqual([]);
    const s = await grpcError(c.node('NodeStageVolume', { ...base, staging_target_path: '/proc/berth-test-never/stage' }));
    expect([s.code, s.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^staging_target_path: .*system directory/)]);

    await c.node('NodeUnstageVolume', base);
    expect(mountsAt(staging)).toEqual([]);
    await c.controller('DeleteVolume', { volume_id: vol.volume_id });
    expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
  });
});
