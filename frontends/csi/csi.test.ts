/**
 * The CSI frontend in-process: berth's gRPC server and a grpc-js client on a unix socket, in front
 * of the real core (SQLite store) with fake backends. Real bind mounts happen for targets,
 * so everything lives under a per-test temporary root that is swept afterwards.
 */
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../../test/fake/harness.js';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { createSilentLogger, defaultConfig } from '../../core/index.js';
import { isMountpoint } from '../../core/os/mounts.js';
import { blockCap, createCsiClient, grpcError, mountCap, type CsiClient } from '../../test/helpers/csi-client.js';
import { createCsiFrontend } from './index.js';
import type { FrontendServer } from '../types.js';

interface Env {
  h: FakeHarness;
  csi: FrontendServer;
  c: CsiClient;
  dir: string;
  socket: string;
}

const envs: Env[] = [];

afterEach(async () => {
  for (const e of envs.splice(0)) {
    e.c.close();
    await e.csi.stop();
    // Take down any bind mount a failing test left behind before removing the root.
    for (const v of await e.h.svc.list({}, { frontend: 'core' }).catch(() => [])) {
      await e.h.svc.remove({ ref: v.id, force: true }, { frontend: 'core' }).catch(() => undefined);
    }
    await e.h.cleanup();
    rmSync(e.dir, { recursive: true, force: true });
  }
});

async function setup(backends: Parameters<typeof createFakeHarness>[0] extends infer O ? O extends { backends?: infer B } ? B : never : never = {
  local: { capabilities: LOOP_LIKE },
}, maxVolumesPerNode = 0, mode: 'controller' | 'node' | 'both' = 'both'): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-csi-unit-'));
  const h = await createFakeHarness({ root: join(dir, 'state'), backends, nodeId: 'node-a', targetPrefixes: [dir] });
  const socket = join(dir, 'run', 'csi.sock');
  const csi = createCsiFrontend({
    service: h.svc,
    config: { ...defaultConfig().csi, endpoint: socket, maxVolumesPerNode, mode },
    nodeId: 'node-a',
    version: '9.9.9-test',
    log: createSilentLogger(),
  });
  await csi.start();
  const env = { h, csi, c: createCsiClient(socket), dir, socket };
  envs.push(env);
  return env;
}

describe('csi identity', () => {
  it('reports the driver name, version, capabilities and readiness', async () => {
    const { c } = await setup();
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'csi.berth.dev', vendor_version: '9.9.9-test' });
    const caps = (await c.identity('GetPluginCapabilities')).capabilities;
    expect(caps).toContainEqual(expect.objectContaining({ service: { type: 'CONTROLLER_SERVICE' } }));
    expect(caps).toContainEqual(expect.objectContaining({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } }));
    expect(caps).toContainEqual(expect.objectContaining({ volume_expansion: { type: 'ONLINE' } }));
    expect((await c.identity('Probe')).ready).toEqual({ value: true });
  });

  it('listens on a socket only root (and the socket group) may use: 0660, like the other frontends', async () => {
    const { socket } = await setup();
    expect(statSync(socket).mode & 0o777).toBe(0o660);
  });

  it('advertises no expansion or snapshots when no backend has them', async () => {
    const { c } = await setup({ local: {} });
    const caps = (await c.identity('GetPluginCapabilities')).capabilities;
    expect(caps.some((x: { type: string }) => x.type === 'volume_expansion')).toBe(false);
    const ctrl = (await c.controller('ControllerGetCapabilities')).capabilities.map((x: any) => x.rpc.type);
    expect(ctrl).toContain('CREATE_DELETE_VOLUME');
    expect(ctrl).not.toContain('CREATE_DELETE_SNAPSHOT');
    expect(ctrl).not.toContain('EXPAND_VOLUME');
    expect(ctrl).not.toContain('GET_SNAPSHOT');
  });
});

describe('csi controller', () => {
  it('creates idempotently, refuses a different capacity, and renders topology', async () => {
    const { c } = await setup();
    const req = { name: 'pvc-1', capacity_range: { required_bytes: '67108864' }, volume_capabilities: [mountCap()] };
    const a = (await c.controller('CreateVolume', req)).volume;
    expect(a.volume_id).toMatch(/^vol-/);
    expect(a.capacity_bytes).toBe('67108864');
    expect(a.accessible_topology).toEqual([{ segments: { 'topology.csi.berth.dev/node': 'node-a' } }]);
    const b = (await c.controller('CreateVolume', req)).volume;
    expect(b.volume_id).toBe(a.volume_id);
    const e = await grpcError(c.controller('CreateVolume', { ...req, capacity_range: { required_bytes: '134217728' } }));
    expect(e.code).toBe(status.ALREADY_EXISTS);
  });

  it('maps CSI names berth does not allow to a stable valid name, keeping the original as a label', async () => {
    const { c, h } = await setup();
    const req = { name: 'sanity-max-attach-limit-vol+1-44E77943', volume_capabilities: [mountCap()] };
    const a = (await c.controller('CreateVolume', req)).volume;
    expect(a.volume_context.name).toMatch(/^sanity-max-attach-limit-vol-1-44E77943-[0-9a-f]{10}$/);
    expect((await c.controller('CreateVolume', req)).volume.volume_id).toBe(a.volume_id);
    expect(h.svc.find(a.volume_id)?.labels['csi.berth.dev/name']).toBe(req.name);
    const long = (await c.controller('CreateVolume', { name: 'é'.repeat(64), volume_capabilities: [mountCap()] })).volume;
    expect(long.volume_context.name).toMatch(/^csi-[0-9a-f]{10}$/);
  });

  it('names a field the core refuses as the request gave it: a StorageClass parameter, or the capacity range', async () => {
    const { c } = await setup({ local: { capabilities: LOOP_LIKE, minSizeBytes: 16 * 2 ** 20 } });
    const cases: Array<[object, string, number]> = [
      [{ name: 'x', volume_capabilities: [mountCap()], parameters: { backend: 'nope' } }, 'parameters.backend', status.INVALID_ARGUMENT],
      [{ name: 'x', volume_capabilities: [mountCap()], parameters: { size: '1MiB' } }, 'parameters.size', status.OUT_OF_RANGE],
      [{ name: 'x', volume_capabilities: [mountCap()], capacity_range: { required_bytes: String(2 ** 20) } }, 'capacity_range', status.OUT_OF_RANGE],
    ];
    for (const [req, field, code] of cases) {
      const e = await grpcError(c.controller('CreateVolume', req));
      expect({ field, code: e.code, details: e.details.startsWith(`${field}:`) }).toEqual({ field, code, details: true });
    }
  });

  it('names the bad field of malformed requests', async () => {
    const { c } = await setup();
    const cases: Array<[object, string, number]> = [
      [{ volume_capabilities: [mountCap()] }, 'name', status.INVALID_ARGUMENT],
      [{ name: 'x' }, 'volume_capabilities', status.INVALID_ARGUMENT],
      [{ name: 'x', volume_capabilities: [{ mount: {} }] }, 'volume_capabilities[0].access_mode', status.INVALID_ARGUMENT],
      [{ name: 'x', volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }, 'volume_capabilities[0].access_type', status.INVALID_ARGUMENT],
      [{ name: 'x', volume_capabilities: [mountCap()], capacity_range: { required_bytes: '2', limit_bytes: '1' } }, 'capacity_range', status.OUT_OF_RANGE],
      [{ name: 'x', volume_capabilities: [mountCap()], capacity_range: { required_bytes: '9223372036854775807' } }, 'capacity_range.required_bytes', status.OUT_OF_RANGE],
      [{ name: 'x', volume_capabilities: [mountCap()], parameters: { size: 'lots' } }, 'parameters.size', status.INVALID_ARGUMENT],
      [{ name: 'x', volume_capabilities: [mountCap(), blockCap()] }, 'volume_capabilities', status.INVALID_ARGUMENT],
    ];
    for (const [req, field, code] of cases) {
      const e = await grpcError(c.controller('CreateVolume', req));
      expect({ field, code: e.code }).toEqual({ field, code });
      expect(e.details.startsWith(`${field}:`), `${field} in "${e.details}"`).toBe(true);
    }
    const n = await grpcError(c.node('NodePublishVolume', { volume_id: 'vol-x', staging_target_path: '/s', volume_capability: mountCap() }));
    expect(n.code).toBe(status.INVALID_ARGUMENT);
    expect(n.details).toMatch(/^target_path:/);
  });

  it('answers INVALID_ARGUMENT naming volume_content_source for a source the backend cannot use, NOT_FOUND for a missing one', async () => {
    // "local" makes snapshots and clones; "plain" neither (it cannot copy anything).
    const { c } = await setup({ local: { capabilities: LOOP_LIKE }, plain: {} });
    const cap = [mountCap()];
    const src = (await c.controller('CreateVolume', { name: 'src', volume_capabilities: cap })).volume;
    const snap = (await c.controller('CreateSnapshot', { source_volume_id: src.volume_id, name: 'src-snap' })).snapshot;
    const onPlain = (await c.controller('CreateVolume', { name: 'flat', volume_capabilities: cap, parameters: { backend: 'plain' } })).volume;
    const cases: Array<[string, object]> = [
      // the source's backend cannot clone: Unsupported in the core, UNIMPLEMENTED anywhere else
      ['clone on a backend without clones', { volume: { volume_id: onPlain.volume_id } }],
      // a copy lives on its source's backend: asking another one is an incompatible source
      ['snapshot on another backend', { snapshot: { snapshot_id: snap.snapshot_id } }],
      ['volume on another backend', { volume: { volume_id: src.volume_id } }],
    ];
    for (const [what, source] of cases) {
      const parameters = what === 'clone on a backend without clones' ? {} : { backend: 'plain' };
      const e = await grpcError(c.controller('CreateVolume', { name: 'copy', volume_capabilities: cap, parameters, volume_content_source: source }));
      expect({ what, code: e.code }).toEqual({ what, code: status.INVALID_ARGUMENT });
      expect(e.details, what).toMatch(/^volume_content_source: /);
    }
    for (const source of [{ snapshot: { snapshot_id: 'snap-00000000000000000000000000' } }, { volume: { volume_id: 'vol-00000000000000000000000000' } }]) {
      const e = await grpcError(c.controller('CreateVolume', { name: 'copy', volume_capabilities: cap, volume_content_source: source }));
      expect(e.code).toBe(status.NOT_FOUND);
    }
    // Only the content-source step is re-coded: a snapshot on a backend without snapshots stays UNIMPLEMENTED.
    const noSnap = await grpcError(c.controller('CreateSnapshot', { source_volume_id: onPlain.volume_id, name: 'flat-snap' }));
    expect(noSnap.code).toBe(status.UNIMPLEMENTED);
  });

  it('answers NOT_FOUND for unknown volumes and nodes, OK for deleting an unknown volume', async () => {
    const { c } = await setup();
    const missing = 'vol-00000000000000000000000000';
    expect((await grpcError(c.controller('ControllerGetVolume', { volume_id: missing }))).code).toBe(status.NOT_FOUND);
    expect((await grpcError(c.controller('ControllerPublishVolume', {
      volume_id: missing, node_id: 'node-a', volume_capability: mountCap(),
    }))).code).toBe(status.NOT_FOUND);
    expect(await c.controller('DeleteVolume', { volume_id: missing })).toEqual({});
    const vol = (await c.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCap()] })).volume;
    expect((await grpcError(c.controller('ControllerPublishVolume', {
      volume_id: vol.volume_id, node_id: 'node-elsewhere', volume_capability: mountCap(),
    }))).code).toBe(status.NOT_FOUND);
    expect((await grpcError(c.node('NodeUnpublishVolume', { volume_id: missing, target_path: '/tmp/x' }))).code).toBe(status.NOT_FOUND);
  });

  it('lists with cursor tokens, shows published nodes, and refuses foreign tokens with ABORTED', async () => {
    const { c } = await setup();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await c.controller('CreateVolume', { name: `l${i}`, volume_capabilities: [mountCap()] })).volume.volume_id);
    await c.controller('ControllerPublishVolume', { volume_id: ids[2], node_id: 'node-a', volume_capability: mountCap() });
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const r = await c.controller('ListVolumes', { max_entries: 2, starting_token: token });
      for (const e of r.entries) {
        seen.push(e.volume.volume_id);
        expect(e.status.published_node_ids).toEqual(e.volume.volume_id === ids[2] ? ['node-a'] : []);
      }
      token = r.next_token;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual([...ids].sort());
    expect((await grpcError(c.controller('ListVolumes', { starting_token: 'invalid-token' }))).code).toBe(status.ABORTED);
  });

  it('publishes with the device in publish_context and refuses a read-only re-publish with ALREADY_EXISTS', async () => {
    const { c } = await setup();
    const vol = (await c.controller('CreateVolume', { name: 'p', volume_capabilities: [mountCap()] })).volume;
    const req = { volume_id: vol.volume_id, node_id: 'node-a', volume_capability: mountCap(), readonly: false };
    const r = await c.controller('ControllerPublishVolume', req);
    expect(r.publish_context.device).toMatch(/fake/);
    expect(await c.controller('ControllerPublishVolume', req)).toEqual(r);
    expect((await grpcError(c.controller('ControllerPublishVolume', { ...req, readonly: true }))).code).toBe(status.ALREADY_EXISTS);
    expect(await c.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'node-a' })).toEqual({});
    expect(await c.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'node-a' })).toEqual({});
  });

  it('answers ABORTED to a second concurrent operation on the same volume', async () => {
    const { c, h } = await setup();
    const hold = h.backend.holdNext('create');
    const req = { name: 'busy', volume_capabilities: [mountCap()] };
    const first = c.controller('CreateVolume', req);
    await hold.reached;
    const e = await grpcError(c.controller('CreateVolume', req));
    expect(e.code).toBe(status.ABORTED);
    hold.release();
    expect((await first).volume.volume_id).toMatch(/^vol-/);
  });
});

describe('csi node', () => {
  it('runs stage -> publish -> unpublish -> unstage with real bind mounts and removes the target', async () => {
    const { c, dir } = await setup();
    const vol = (await c.controller('CreateVolume', { name: 'life', volume_capabilities: [mountCap()] })).volume;
    const staging = join(dir, 'staging', 'life');
    const target = join(dir, 'pods', 'p1', 'mount');
    const base = { volume_id: vol.volume_id, volume_capability: mountCap() };
    expect((await grpcError(c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: target }))).code)
      .toBe(status.FAILED_PRECONDITION);
    await c.node('NodeStageVolume', { ...base, staging_target_path: staging });
    await c.node('NodeStageVolume', { ...base, staging_target_path: staging });
    expect(await isMountpoint(staging)).toBe(true); // loop-like (attachable) backend: the fs is bound at staging
    await c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: target });
    await c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: target });
    expect(await isMountpoint(target)).toBe(true);
    expect((await grpcError(c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: target, readonly: true }))).code)
      .toBe(status.ALREADY_EXISTS);
    const stats = await c.node('NodeGetVolumeStats', { volume_id: vol.volume_id, volume_path: target });
    expect(stats.usage[0].unit).toBe('BYTES');
    expect(stats.volume_condition.abnormal).toBe(false);
    expect((await grpcError(c.node('NodeGetVolumeStats', { volume_id: vol.volume_id, volume_path: 'some/path' }))).code)
      .toBe(status.NOT_FOUND);
    // Deleting a staged volume is refused until the node lets go of it.
    expect((await grpcError(c.controller('DeleteVolume', { volume_id: vol.volume_id }))).code).toBe(status.FAILED_PRECONDITION);
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: target });
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: target });
    expect(existsSync(target)).toBe(false);
    await c.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: staging });
    await c.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: staging });
    expect(await isMountpoint(staging)).toBe(false);
    await c.controller('DeleteVolume', { volume_id: vol.volume_id });
    expect((await c.controller('ListVolumes', {})).entries).toEqual([]);
  });

  it('issue 9 repro: target_path equal to, inside or around staging_target_path is INVALID_ARGUMENT and the stage stays intact', async () => {
    for (const backends of [{ local: { capabilities: LOOP_LIKE } }, { local: {} }]) { // staging bound (loop-like) or not (dir-like)
      const { c, dir, h } = await setup(backends);
      const vol = (await c.controller('CreateVolume', { name: 'same', volume_capabilities: [mountCap()] })).volume;
      const staging = join(dir, 'staging', 'same');
      const base = { volume_id: vol.volume_id, volume_capability: mountCap(), staging_target_path: staging };
      await c.node('NodeStageVolume', base);
      for (const [target_path, why] of [[staging, /is the staging_target_path/], [`${staging}/`, /is the staging_target_path/],
        [join(staging, 'pod'), /inside staging_target_path/], [join(dir, 'staging'), /holds staging_target_path/]] as const) {
        const e = await grpcError(c.node('NodePublishVolume', { ...base, target_path }));
        expect(e.code).toBe(status.INVALID_ARGUMENT);
        expect(e.details).toMatch(/^target_path: /);
        expect(e.details).toMatch(why);
      }
      const after = await h.svc.inspect(vol.volume_id, { frontend: 'core' });
      expect(after.mounts.map((m) => m.consumer)).toEqual([`csi-stage:${staging}`]);
      expect(await isMountpoint(staging)).toBe(backends.local.capabilities !== undefined);
      // An unpublish of the staging path finds nothing of its own to take down.
      await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: staging });
      expect(await isMountpoint(staging)).toBe(backends.local.capabilities !== undefined);
      await c.node('NodeUnstageVolume', base);
    }
  });

  it('names target_path / staging_target_path when the target rules refuse a path, and mounts nothing', async () => {
    const { c, dir } = await setup();
    const vol = (await c.controller('CreateVolume', { name: 'rules', volume_capabilities: [mountCap()] })).volume;
    const base = { volume_id: vol.volume_id, volume_capability: mountCap() };
    const { mkdirSync, symlinkSync } = await import('node:fs');
    mkdirSync(join(dir, 'victim'));
    symlinkSync(join(dir, 'victim'), join(dir, 'link'));
    let e = await grpcError(c.node('NodeStageVolume', { ...base, staging_target_path: join(dir, 'link') }));
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^staging_target_path: .*symbolic link/)]);
    e = await grpcError(c.node('NodeStageVolume', { ...base, staging_target_path: join(dir, 'state', 'stage') }));
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^staging_target_path: .*state root/)]);
    const staging = join(dir, 'staging', 'rules');
    await c.node('NodeStageVolume', { ...base, staging_target_path: staging });
    e = await grpcError(c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: join(dir, 'link', 'pod') }));
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^target_path: .*symbolic link/)]);
    e = await grpcError(c.node('NodePublishVolume', { ...base, staging_target_path: staging, target_path: '/proc/berth-test-never/mount' }));
    expect([e.code, e.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^target_path: .*system directory/)]);
    expect(await isMountpoint(join(dir, 'victim'))).toBe(false);
    await c.node('NodeUnstageVolume', { ...base, staging_target_path: staging });
  });

  it('issue 9 repro: NodeUnpublish leaves a tmpfs that was at target_path, with its data and directory', async () => {
    const { c, dir } = await setup();
    const vol = (await c.controller('CreateVolume', { name: 'pre', volume_capabilities: [mountCap()] })).volume;
    const staging = join(dir, 'staging', 'pre');
    const target = join(dir, 'pods', 'p', 'mount');
    const base = { volume_id: vol.volume_id, volume_capability: mountCap(), staging_target_path: staging };
    const { mkdirSync, readFileSync } = await import('node:fs');
    const { createExec } = await import('../../core/os/exec.js');
    const { mount, unmount } = await import('../../core/os/mounts.js');
    mkdirSync(target, { recursive: true });
    await mount(createExec(), 'tmpfs', target, { fsType: 'tmpfs', options: ['size=1m'] });
    writeFileSync(join(target, 'f'), 'precious');
    await c.node('NodeStageVolume', base);
    await c.node('NodePublishVolume', { ...base, target_path: target });
    expect(existsSync(join(target, 'f'))).toBe(false);
    await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: target });
    expect(readFileSync(join(target, 'f'), 'utf8')).toBe('precious');
    await unmount(createExec(), target);
    expect(statSync(target).isDirectory()).toBe(true);
    await c.node('NodeUnstageVolume', base);
  });

  it('reports node id, topology and max volumes', async () => {
    const { c } = await setup(undefined, 16);
    expect(await c.node('NodeGetInfo')).toEqual({
      node_id: 'node-a', max_volumes_per_node: '16',
      accessible_topology: { segments: { 'topology.csi.berth.dev/node': 'node-a' } },
    });
    const caps = (await c.node('NodeGetCapabilities')).capabilities.map((x: any) => x.rpc.type);
    expect(caps).toEqual(expect.arrayContaining(['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'VOLUME_CONDITION']));
  });
});

describe('csi server lifecycle', () => {
  it('serves only Identity and Node in node mode', async () => {
    const { c } = await setup(undefined, 0, 'node');
    const caps = (await c.identity('GetPluginCapabilities')).capabilities;
    expect(caps).not.toContainEqual(expect.objectContaining({ service: { type: 'CONTROLLER_SERVICE' } }));
    expect((await grpcError(c.controller('ListVolumes', {}))).code).toBe(status.UNIMPLEMENTED);
    expect((await c.node('NodeGetInfo')).node_id).toBe('node-a');
  });

  it('replaces a stale socket, refuses to replace a regular file, and removes its socket on stop', async () => {
    const { csi, socket } = await setup();
    await csi.stop();
    expect(existsSync(socket)).toBe(false);
    await csi.stop(); // twice is fine
    // A socket left by a killed daemon: a net server that goes away without unlinking.
    const { createServer } = await import('node:net');
    const stale = createServer();
    await new Promise<void>((r) => stale.listen(socket, r));
    const { unlinkSync, renameSync } = await import('node:fs');
    renameSync(socket, `${socket}.keep`); // keep the inode past close(), which unlinks
    await new Promise<void>((r) => stale.close(() => r()));
    renameSync(`${socket}.keep`, socket);
    await csi.start();
    const c = createCsiClient(socket);
    expect((await c.identity('Probe')).ready).toEqual({ value: true });
    c.close();
    await csi.stop();
    writeFileSync(socket, 'not a socket');
    await expect(csi.start()).rejects.toThrow(/not a socket/);
    unlinkSync(socket);
  });

  it('refuses an endpoint another process serves, and a refused start leaves that socket alone', async () => {
    const { csi, socket } = await setup();
    await csi.stop();
    const { createServer } = await import('node:net');
    const other = createServer();
    await new Promise<void>((r) => other.listen(socket, r));
    try {
      await expect(csi.start()).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/^csi\.endpoint: .*in use/) });
      await csi.stop();
      expect(statSync(socket).isSocket()).toBe(true);
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });
});
