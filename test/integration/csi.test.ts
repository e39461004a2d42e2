/**
 * CSI against a real berth daemon (dist/berth.js) over its unix socket, with real
 * directories, loop devices, mkfs and bind mounts: the full lifecycle on dir and loop
 * (mount and block), idempotency, ABORTED under concurrency, NOT_FOUND, malformed
 * requests, a kill -9 in the middle of a lifecycle, and one state across frontends.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { isMountpoint } from '../../core/os/mounts.js';
import { blockCap, createCsiClient, grpcError, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { raw } from '../helpers/http.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const MiB = 2 ** 20;

async function start(label: string, o: { docker?: boolean } = {}): Promise<{ d: TestDaemon; c: CsiClient; root: TmpRoot }> {
  const root = await roots.create(label);
  const d = await startTestDaemon(root, { csi: true, ...(o.docker ? { docker: true } : {}) });
  const c = createCsiClient(d.csiEndpoint);
  root.defer(() => c.close());
  return { d, c, root };
}

/** Each step twice: every CSI call must be idempotent. */
async function twice<T>(fn: () => Promise<T>): Promise<T> {
  const first = await fn();
  expect(await fn()).toEqual(first);
  return first;
}

interface Lifecycle {
  readonly volumeId: string;
  readonly staging: string;
  readonly target: string;
}

async function stageAndPublish(c: CsiClient, root: TmpRoot, volumeId: string, cap: object, name: string): Promise<Lifecycle> {
  const staging = root.path('kubelet', 'staging', name);
  const target = root.path('kubelet', 'pods', name, 'volume');
  await twice(() => c.node('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: cap }));
  await twice(() => c.node('NodePublishVolume', {
    volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: cap,
  }));
  return { volumeId, staging, target };
}

async function teardown(c: CsiClient, l: Lifecycle): Promise<void> {
  await twice(() => c.node('NodeUnpublishVolume', { volume_id: l.volumeId, target_path: l.target }));
  expect(existsSync(l.target)).toBe(false);
  await twice(() => c.node('NodeUnstageVolume', { volume_id: l.volumeId, staging_target_path: l.staging }));
  await twice(() => c.controller('DeleteVolume', { volume_id: l.volumeId }));
  expect((await grpcError(c.controller('ControllerGetVolume', { volume_id: l.volumeId }))).code).toBe(status.NOT_FOUND);
}

describe('csi against a real daemon', () => {
  it('runs the full lifecycle on dir, data visible through the published path', async () => {
    const { d, c, root } = await start('csi-dir');
    const req = { name: 'pvc-dir', capacity_range: { required_bytes: String(10 * MiB) }, volume_capabilities: [mountCap()] };
    const vol = (await twice(() => c.controller('CreateVolume', req))).volume;
    expect(vol.volume_context.backend).toBe('local');
    const cap = mountCap();
    const l = await stageAndPublish(c, root, vol.volume_id, cap, 'dir');
    expect(await isMountpoint(l.target)).toBe(true);
    writeFileSync(join(l.target, 'hello.txt'), 'from a pod');
    // A second pod on the node, read-only: sees the data, cannot write.
    const ro = root.path('kubelet', 'pods', 'dir-ro', 'volume');
    // The daemon writes a call's log lines after its answer, before the status that ends the
    // call (core/log.ts afterTurn): a caller that has its answer finds them in the log.
    const publishLines = () => d.logs().split('\n').filter((line) => line.includes('"method":"NodePublishVolume"')).length;
    const logged = publishLines();
    await c.node('NodePublishVolume', {
      volume_id: vol.volume_id, staging_target_path: l.staging, target_path: ro, volume_capability: cap, readonly: true,
    });
    expect(publishLines()).toBe(logged + 1);
    expect(readFileSync(join(ro, 'hello.txt'), 'utf8')).toBe('from a pod');
    expect(() => writeFileSync(join(ro, 'nope.txt'), 'x')).toThrow(/EROFS|read-only/);
    const stats = await c.node('NodeGetVolumeStats', { volume_id: vol.volume_id, volume_path: l.target });
    expect(Number(stats.usage.find((u: any) => u.unit === 'BYTES').total)).toBeGreaterThan(0);
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: ro });
    await teardown(c, l);
  });

  it('runs the full lifecycle on loop (xfs, mount access) with the fs bound at the staging path', async () => {
    const { c, root } = await start('csi-loop');
    const req = {
      name: 'pvc-loop', capacity_range: { required_bytes: String(300 * MiB) }, volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'xfs')],
      parameters: { backend: 'loop' },
    };
    const vol = (await twice(() => c.controller('CreateVolume', req))).volume;
    expect(vol.volume_context).toMatchObject({ backend: 'loop', fsType: 'xfs' });
    const pub = await twice(() => c.controller('ControllerPublishVolume', {
      volume_id: vol.volume_id, node_id: 'test-node', volume_capability: mountCap(),
    }));
    expect(pub.publish_context.device).toMatch(/^\/dev\/loop\d+$/);
    const l = await stageAndPublish(c, root, vol.volume_id, mountCap(), 'loop');
    expect(await isMountpoint(l.staging)).toBe(true);
    const info = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x) => x.includes(` ${l.target} `));
    expect(info).toMatch(/ - xfs /);
    writeFileSync(join(l.target, 'db.dat'), 'rows');
    const listed = (await c.controller('ListVolumes', {})).entries.find((e: any) => e.volume.volume_id === vol.volume_id);
    expect(listed.status.published_node_ids).toEqual(['test-node']);
    // Still staged: unpublish from the node is refused until the node lets go.
    expect((await grpcError(c.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'test-node' }))).code)
      .toBe(status.FAILED_PRECONDITION);
    await twice(() => c.node('NodeUnpublishVolume', { volume_id: l.volumeId, target_path: l.target }));
    await twice(() => c.node('NodeUnstageVolume', { volume_id: l.volumeId, staging_target_path: l.staging }));
    expect(await isMountpoint(l.staging)).toBe(false);
    await twice(() => c.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'test-node' }));
    await twice(() => c.controller('DeleteVolume', { volume_id: vol.volume_id }));
  });

  it('publishes a loop block volume as a device file at the target', async () => {
    const { c, root } = await start('csi-block');
    const req = {
      name: 'pvc-block', capacity_range: { required_bytes: String(32 * MiB) }, volume_capabilities: [blockCap()],
      parameters: { backend: 'loop' },
    };
    const vol = (await twice(() => c.controller('CreateVolume', req))).volume;
    expect(vol.volume_context.volumeMode).toBe('block');
    // A block volume cannot be staged or published as a filesystem.
    expect((await grpcError(c.node('NodeStageVolume', {
      volume_id: vol.volume_id, staging_target_path: root.path('s'), volume_capability: mountCap(),
    }))).code).toBe(status.INVALID_ARGUMENT);
    const l = await stageAndPublish(c, root, vol.volume_id, blockCap(), 'block');
    const st = statSync(l.target);
    expect(st.isBlockDevice()).toBe(true);
    expect(await isMountpoint(l.target)).toBe(true);
    await teardown(c, l);
  });

  it('snapshots, restores, clones and grows a loop xfs volume online through CSI', async () => {
    const { c, root } = await start('csi-data');
    const caps = (await c.controller('ControllerGetCapabilities')).capabilities.map((x: any) => x.rpc.type);
    expect(caps).toEqual(expect.arrayContaining(['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME', 'EXPAND_VOLUME']));
    expect(caps).not.toContain('GET_SNAPSHOT');
    const params = { backend: 'loop', fs: 'xfs' };
    const size = { required_bytes: String(300 * MiB) };
    const src = (await c.controller('CreateVolume', { name: 'pvc-src', capacity_range: size, volume_capabilities: [mountCap()], parameters: params })).volume;
    const l = await stageAndPublish(c, root, src.volume_id, mountCap(), 'src');
    writeFileSync(join(l.target, 'before.txt'), 'in the snapshot');
    const snap = (await twice(() => c.controller('CreateSnapshot', { source_volume_id: src.volume_id, name: 'snap-1' }))).snapshot;
    expect(snap).toMatchObject({ source_volume_id: src.volume_id, ready_to_use: true });
    writeFileSync(join(l.target, 'after.txt'), 'not in the snapshot');
    const listed = (await c.controller('ListSnapshots', { source_volume_id: src.volume_id })).entries.map((e: any) => e.snapshot.snapshot_id);
    expect(listed).toEqual([snap.snapshot_id]);

    // Restore: data from before the snapshot only.
    const restored = (await c.controller('CreateVolume', {
      name: 'pvc-restored', capacity_range: size, volume_capabilities: [mountCap()], parameters: params,
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    })).volume;
    expect(restored.content_source).toMatchObject({ snapshot: { snapshot_id: snap.snapshot_id } });
    const r = await stageAndPublish(c, root, restored.volume_id, mountCap(), 'restored');
    expect(readFileSync(join(r.target, 'before.txt'), 'utf8')).toBe('in the snapshot');
    expect(existsSync(join(r.target, 'after.txt'))).toBe(false);
    await teardown(c, r);

    // Online growth while published: the filesystem the pod sees gets bigger.
    const statfsTotal = async (p: string) => {
      const s = await c.node('NodeGetVolumeStats', { volume_id: src.volume_id, volume_path: p });
      return Number(s.usage.find((u: any) => u.unit === 'BYTES').total);
    };
    const before = await statfsTotal(l.target);
    const grown = await c.controller('ControllerExpandVolume', { volume_id: src.volume_id, capacity_range: { required_bytes: String(400 * MiB) } });
    expect(grown).toEqual({ capacity_bytes: String(400 * MiB), node_expansion_required: false });
    expect(await statfsTotal(l.target)).toBeGreaterThan(before + 50 * MiB);

    // Clone: an independent copy of the source as it is now.
    const clone = (await c.controller('CreateVolume', {
      name: 'pvc-clone', capacity_range: { required_bytes: String(400 * MiB) }, volume_capabilities: [mountCap()], parameters: params,
      volume_content_source: { volume: { volume_id: src.volume_id } },
    })).volume;
    const k = await stageAndPublish(c, root, clone.volume_id, mountCap(), 'clone');
    expect(readFileSync(join(k.target, 'after.txt'), 'utf8')).toBe('not in the snapshot');
    writeFileSync(join(k.target, 'only-in-clone.txt'), 'x');
    expect(existsSync(join(l.target, 'only-in-clone.txt'))).toBe(false);
    await teardown(c, k);
    await twice(() => c.controller('DeleteSnapshot', { snapshot_id: snap.snapshot_id }));
    await teardown(c, l);
  });

  it('keeps an ext4 resize pending until the next stage grows the filesystem', async () => {
    const { c, root } = await start('csi-ext4-grow');
    const vol = (await c.controller('CreateVolume', {
      name: 'pvc-ext4', capacity_range: { required_bytes: String(64 * MiB) }, volume_capabilities: [mountCap()],
      parameters: { backend: 'loop', fs: 'ext4' },
    })).volume;
    let l = await stageAndPublish(c, root, vol.volume_id, mountCap(), 'ext4');
    const expand = { volume_id: vol.volume_id, volume_path: l.target, capacity_range: { required_bytes: String(128 * MiB) } };
    const grown = await c.controller('ControllerExpandVolume', { volume_id: vol.volume_id, capacity_range: expand.capacity_range });
    expect(grown).toEqual({ capacity_bytes: String(128 * MiB), node_expansion_required: true });
    const pending = await grpcError(c.node('NodeExpandVolume', expand));
    expect(pending.code).toBe(status.FAILED_PRECONDITION);
    expect(pending.details).toContain('next mount');
    // The pod restarts: unpublish + unstage, then stage again (the filesystem grows at mount).
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: l.target });
    await c.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: l.staging });
    l = await stageAndPublish(c, root, vol.volume_id, mountCap(), 'ext4');
    expect(await c.node('NodeExpandVolume', expand)).toEqual({ capacity_bytes: String(128 * MiB) });
    const s = await c.node('NodeGetVolumeStats', { volume_id: vol.volume_id, volume_path: l.target });
    expect(Number(s.usage.find((u: any) => u.unit === 'BYTES').total)).toBeGreaterThan(110 * MiB);
    await teardown(c, l);
  });

  it('keeps a small ext4 growth (+6%) pending until the next stage: measured, not guessed from statfs', async () => {
    const { d, c, root } = await start('csi-ext4-small-grow');
    const vol = (await c.controller('CreateVolume', {
      name: 'pvc-ext4-small', capacity_range: { required_bytes: String(512 * MiB) }, volume_capabilities: [mountCap()],
      parameters: { backend: 'loop', fs: 'ext4' },
    })).volume;
    let l = await stageAndPublish(c, root, vol.volume_id, mountCap(), 'ext4-small');
    const statfsTotal = async (p: string) => {
      const s = await c.node('NodeGetVolumeStats', { volume_id: vol.volume_id, volume_path: p });
      return Number(s.usage.find((u: any) => u.unit === 'BYTES').total);
    };
    const before = await statfsTotal(l.target);
    expect(await d.client.stats(vol.volume_id)).toMatchObject({ fsGrowthPending: false });
    const expand = { volume_id: vol.volume_id, volume_path: l.target, capacity_range: { required_bytes: String(544 * MiB) } };
    const grown = await c.controller('ControllerExpandVolume', { volume_id: vol.volume_id, capacity_range: expand.capacity_range });
    expect(grown).toEqual({ capacity_bytes: String(544 * MiB), node_expansion_required: true });
    // statfs already shows more than 85% of the new size: the old ratio rule answered "done" here.
    expect(await statfsTotal(l.target)).toBe(before);
    expect(before).toBeGreaterThan(0.85 * 544 * MiB);
    expect(await d.client.stats(vol.volume_id)).toMatchObject({ fsGrowthPending: true, totalBytes: before });
    for (const path of [l.target, l.staging]) {
      const pending = await grpcError(c.node('NodeExpandVolume', { ...expand, volume_path: path }));
      expect(pending.code).toBe(status.FAILED_PRECONDITION);
      expect(pending.details).toContain('next mount');
    }
    // The pod restarts: unpublish + unstage, then stage again (the filesystem grows at mount).
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: l.target });
    await c.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: l.staging });
    l = await stageAndPublish(c, root, vol.volume_id, mountCap(), 'ext4-small');
    expect(await c.node('NodeExpandVolume', expand)).toEqual({ capacity_bytes: String(544 * MiB) });
    expect(await d.client.stats(vol.volume_id)).toMatchObject({ fsGrowthPending: false });
    expect(await statfsTotal(l.target)).toBeGreaterThan(before + 24 * MiB);
    await teardown(c, l);
  });

  it('answers ABORTED while another operation holds the volume, and the winner completes', async () => {
    const { c, root } = await start('csi-abort');
    const vol = (await c.controller('CreateVolume', {
      name: 'pvc-race', capacity_range: { required_bytes: String(300 * MiB) }, volume_capabilities: [mountCap()],
      parameters: { backend: 'loop', fs: 'xfs' },
    })).volume;
    // The first stage attaches, runs mkfs.xfs and mounts (tens of ms at least); the others arrive meanwhile.
    const stagings = [0, 1, 2, 3].map((i) => root.path('staging', `s${i}`));
    const results = await Promise.allSettled(stagings.map((s) => c.node('NodeStageVolume', {
      volume_id: vol.volume_id, staging_target_path: s, volume_capability: mountCap(),
    })));
    const codes = results.map((r) => (r.status === 'fulfilled' ? status.OK : (r.reason as { code: number }).code));
    expect(codes).toContain(status.ABORTED);
    expect(codes).toContain(status.OK);
    expect(codes.every((x) => x === status.OK || x === status.ABORTED)).toBe(true);
    for (const [i, s] of stagings.entries()) {
      if (codes[i] === status.OK) await c.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: s });
    }
    await c.controller('DeleteVolume', { volume_id: vol.volume_id });
  });

  it('answers NOT_FOUND for unknown volumes and INVALID_ARGUMENT naming the field for malformed requests', async () => {
    const { c } = await start('csi-errors');
    const missing = 'vol-01aaaaaaaaaaaaaaaaaaaaaaaa';
    const notFound: Array<[string, 'controller' | 'node', object]> = [
      ['ControllerGetVolume', 'controller', { volume_id: missing }],
      ['ValidateVolumeCapabilities', 'controller', { volume_id: missing, volume_capabilities: [mountCap()] }],
      ['NodeStageVolume', 'node', { volume_id: missing, staging_target_path: '/tmp/x-stage', volume_capability: mountCap() }],
      ['NodePublishVolume', 'node', {
        volume_id: missing, staging_target_path: '/tmp/x-stage', target_path: '/tmp/x-target', volume_capability: mountCap(),
      }],
      ['NodeGetVolumeStats', 'node', { volume_id: missing, volume_path: '/tmp/x-target' }],
    ];
    for (const [method, svc, req] of notFound) {
      expect({ method, code: (await grpcError(c[svc](method, req))).code }).toEqual({ method, code: status.NOT_FOUND });
    }
    const malformed: Array<[string, 'controller' | 'node', object, string]> = [
      ['CreateVolume', 'controller', { volume_capabilities: [mountCap()] }, 'name'],
      ['CreateVolume', 'controller', { name: 'x', volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }, 'volume_capabilities[0].access_type'],
      ['CreateVolume', 'controller', { name: 'x', volume_capabilities: [mountCap()], parameters: { backend: 'nope' } }, 'parameters.backend'],
      ['CreateVolume', 'controller', { name: 'x', volume_capabilities: [mountCap()], parameters: { fs: 'ntfs' } }, 'parameters.fs'],
      ['DeleteVolume', 'controller', {}, 'volume_id'],
      ['ControllerPublishVolume', 'controller', { volume_id: missing, volume_capability: mountCap() }, 'node_id'],
      ['ListVolumes', 'controller', { max_entries: -1 }, 'max_entries'],
      ['NodeStageVolume', 'node', { volume_id: missing, volume_capability: mountCap() }, 'staging_target_path'],
      ['NodeStageVolume', 'node', { volume_id: missing, staging_target_path: 'relative/path', volume_capability: mountCap() }, 'staging_target_path'],
      ['NodeStageVolume', 'node', { volume_id: missing, staging_target_path: '/tmp/s' }, 'volume_capability'],
      ['NodePublishVolume', 'node', { volume_id: missing, staging_target_path: '/tmp/s', volume_capability: mountCap() }, 'target_path'],
      ['NodeUnpublishVolume', 'node', { target_path: '/tmp/t' }, 'volume_id'],
      ['NodeGetVolumeStats', 'node', { volume_id: missing }, 'volume_path'],
    ];
    for (const [method, svc, req, field] of malformed) {
      const e = await grpcError(c[svc](method, req));
      expect({ method, field, code: e.code }).toEqual({ method, field, code: status.INVALID_ARGUMENT });
      expect(e.details, `${method}: ${e.details}`).toContain(field);
    }
  });

  it('keeps a staged loop volume across a kill -9 of the daemon and finishes the lifecycle after restart', async () => {
    const { d, root } = await start('csi-restart');
    let c = createCsiClient(d.csiEndpoint);
    const vol = (await c.controller('CreateVolume', {
      name: 'pvc-restart', capacity_range: { required_bytes: String(64 * MiB) }, volume_capabilities: [mountCap()],
      parameters: { backend: 'loop' },
    })).volume;
    const staging = root.path('staging', 'r');
    const target = root.path('pods', 'r', 'volume');
    await c.node('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: staging, volume_capability: mountCap() });
    writeFileSync(join(staging, 'before.txt'), 'kept');
    c.close();

    await d.kill('SIGKILL');
    await d.start();
    c = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());

    expect(await isMountpoint(staging)).toBe(true);
    const listed = (await c.controller('ControllerGetVolume', { volume_id: vol.volume_id })).volume;
    expect(listed.volume_id).toBe(vol.volume_id);
    await c.node('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: staging, volume_capability: mountCap() });
    await c.node('NodePublishVolume', {
      volume_id: vol.volume_id, staging_target_path: staging, target_path: target, volume_capability: mountCap(),
    });
    expect(readFileSync(join(target, 'before.txt'), 'utf8')).toBe('kept');
    await teardown(c, { volumeId: vol.volume_id, staging, target });
  });

  it('shares one state with the admin API and the Docker frontend', async () => {
    const { d, c, root } = await start('csi-shared', { docker: true });
    const viaAdmin = await d.client.createVolume({ name: 'made-by-admin', size: '16MiB' });
    const docker = await raw({ socket: d.dockerSocket }, 'POST', '/VolumeDriver.Create', { Name: 'made-by-docker', Opts: { size: '8MiB' } });
    expect(docker.json).toEqual({ Err: '' });
    const entries = (await c.controller('ListVolumes', {})).entries.map((e: any) => e.volume);
    const byId = new Map(entries.map((v: any) => [v.volume_id, v]));
    expect(byId.get(viaAdmin.id)).toMatchObject({ capacity_bytes: String(16 * MiB) });
    const dockerVol = entries.find((v: any) => v.volume_context.name === 'made-by-docker');
    expect(dockerVol).toBeDefined();
    // Deleting through CSI is seen by the admin API.
    await c.controller('DeleteVolume', { volume_id: viaAdmin.id });
    const names = (await d.client.listVolumes()).map((v) => v.name);
    expect(names).toEqual(['made-by-docker']);
    // A volume CSI creates is visible to Docker by name.
    await c.controller('CreateVolume', { name: 'made-by-csi', volume_capabilities: [mountCap()] });
    const got = await raw({ socket: d.dockerSocket }, 'POST', '/VolumeDriver.Get', { Name: 'made-by-csi' });
    expect(got.json).toMatchObject({ Err: '', Volume: { Name: 'made-by-csi' } });

    // A ReadWriteOncePod volume a Docker container holds cannot also be published to a pod.
    const rwop = await d.client.createVolume({ name: 'one-writer', accessMode: 'ReadWriteOncePod' });
    const m = await raw({ socket: d.dockerSocket }, 'POST', '/VolumeDriver.Mount', { Name: 'one-writer', ID: 'ctr-1' });
    expect(m.json).toMatchObject({ Err: '' });
    const cap = mountCap('SINGLE_NODE_SINGLE_WRITER');
    const staging = root.path('staging', 'rwop');
    await c.node('NodeStageVolume', { volume_id: rwop.id, staging_target_path: staging, volume_capability: cap });
    const e = await grpcError(c.node('NodePublishVolume', {
      volume_id: rwop.id, staging_target_path: staging, target_path: root.path('pods', 'rwop', 'v'), volume_capability: cap,
    }));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('docker:ctr-1');
    await c.node('NodeUnstageVolume', { volume_id: rwop.id, staging_target_path: staging });
    await raw({ socket: d.dockerSocket }, 'POST', '/VolumeDriver.Unmount', { Name: 'one-writer', ID: 'ctr-1' });
  });
});
