// The frontends in cluster mode on real parts: one etcd started by the test, berth daemons
// (dist/berth.js) with their own state roots, sockets and node ids, real loop volumes on the
// shared storage, real gRPC, the real Docker engine and the real dvdcli executable.
//
// - CSI: every node reports its topology segment; a node-local volume carries its home node,
//   a shared one none; any node's controller publishes to the named node, and a second node
//   of a single-node volume is FAILED_PRECONDITION naming the holder; published_node_ids are
//   every node's; node_id must be a member; a volume released on one node stages on another
//   with its data.
// - Docker: the driver's scope is "global" (docker volume inspect), and a volume a container
//   holds on one node is refused to dvdcli on another in one clear stderr line naming the
//   holder, then mounts there once the container is gone.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { execFile } from '../helpers/callers.js';
import { startCluster, type TestNode } from '../helpers/cluster.js';
import { createCsiClient, grpcError, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { REPO_ROOT } from '../helpers/daemon.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { cleanupDocker, docker, TEST_IMAGE, uniqueName, waitFor } from '../helpers/docker.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const KEY = 'topology.csi.berth.dev/node';
const at = (node: string) => ({ segments: { [KEY]: node } });

function csiOf(root: TmpRoot, n: TestNode): CsiClient {
  const c = createCsiClient(n.csiEndpoint);
  root.defer(() => c.close());
  return c;
}

describe('frontends in cluster mode (real daemons, one etcd)', () => {
  it('CSI: topology, publish to the named node from any node, FAILED_PRECONDITION naming the holder, and the volume stages on the next node with its data', async () => {
    const root = roots.create('cluster-fe-csi');
    const c = await startCluster(root, { nodes: ['ia', 'ib'], daemon: () => ({ csi: true }) });
    const [ia, ib] = [c.node('ia'), c.node('ib')];
    const a = csiOf(root, ia);
    const b = csiOf(root, ib);
    expect((await a.node('NodeGetInfo')).accessible_topology).toEqual(at('ia'));
    expect((await b.node('NodeGetInfo')).accessible_topology).toEqual(at('ib'));

    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    const vol = (await a.controller('CreateVolume', {
      name: 'pg', volume_capabilities: [cap], parameters: { backend: 'sloop' }, capacity_range: { required_bytes: String(64 * 2 ** 20) },
    })).volume;
    expect(vol.accessible_topology).toEqual([]); // shared storage: every node
    const local = (await b.controller('CreateVolume', { name: 'scratch', volume_capabilities: [mountCap()], parameters: { backend: 'local' } })).volume;
    expect(local.accessible_topology).toEqual([at('ib')]);
    expect((await a.controller('ControllerGetVolume', { volume_id: local.volume_id })).volume.accessible_topology).toEqual([at('ib')]);

    // ib's controller publishes to ia; ia stages it (attaches the loop device, makes ext4) and writes.
    const pub = (node_id: string, on: CsiClient) => on.controller('ControllerPublishVolume', { volume_id: vol.volume_id, node_id, volume_capability: cap, readonly: false });
    await pub('ia', b);
    const stageA = root.path('kubelet', 'ia', 'staging', 'pg');
    await a.node('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: stageA, volume_capability: cap });
    writeFileSync(join(stageA, 'record'), 'synced on ia\n');
    for (const on of [a, b]) {
      const listed = (await on.controller('ListVolumes', {})).entries.find((e: any) => e.volume.volume_id === vol.volume_id);
      expect(listed.status.published_node_ids).toEqual(['ia']);
    }

    for (const on of [a, b]) {
      const e = await grpcError(pub('ib', on));
      expect(e.code).toBe(status.FAILED_PRECONDITION);
      expect(e.details).toMatch(/"?ia"?/);
    }
    const unknown = await grpcError(pub('nowhere', b));
    expect(unknown.code).toBe(status.NOT_FOUND);
    // Unpublishing ia while ia still has it mounted: refused, so no one else may attach under a live mount.
    const early = await grpcError(b.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'ia' }));
    expect([early.code, early.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/ia/)]);

    // ia lets go (kubelet's NodeUnstage, then the attacher's ControllerUnpublish); ib takes it.
    // The unpublish goes to ia's own controller, which detaches ia's loop device: another
    // node's controller can only drop the record (the core leaves ia's device to ia).
    await a.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: stageA });
    await a.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'ia' });
    await pub('ib', a);
    const stageB = root.path('kubelet', 'ib', 'staging', 'pg');
    await b.node('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: stageB, volume_capability: cap });
    expect(readFileSync(join(stageB, 'record'), 'utf8')).toBe('synced on ia\n');
    expect((await a.controller('ControllerGetVolume', { volume_id: vol.volume_id })).status.published_node_ids).toEqual(['ib']);
    await b.node('NodeUnstageVolume', { volume_id: vol.volume_id, staging_target_path: stageB });
    await a.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'ib' });
    // ia's controller only drops ib's record; ib, seeing it go, detaches its own loop device.
    const imageOnIb = join(ib.sharedRoot, 'loop', `${vol.volume_id}.img`);
    await waitFor('ib to detach the loop device of an attachment another node dropped', async () => execFileSync('losetup', ['-n', '-j', imageOnIb], { encoding: 'utf8' }).trim() === '');
    await a.controller('DeleteVolume', { volume_id: vol.volume_id });
    // A node-local volume is deleted by its home node's controller (the provisioner there).
    const remote = await grpcError(a.controller('DeleteVolume', { volume_id: local.volume_id }));
    expect([remote.code, remote.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/"ib"/)]);
    await b.controller('DeleteVolume', { volume_id: local.volume_id });
    expect((await a.controller('ListVolumes', {})).entries).toEqual([]);
  });

  it('Docker: the scope is global; a volume a container holds on one node is refused to dvdcli on another in one line naming it, and mounts there once released', async () => {
    const root = roots.create('cluster-fe-docker');
    const drivers = { da: await acquireDriver('clusterFrontends'), db: await acquireDriver('clusterFrontends') };
    root.defer(drivers.da.release);
    root.defer(drivers.db.release);
    const c = await startCluster(root, {
      nodes: ['da', 'db'],
      daemon: (id) => {
        const d = drivers[id as 'da' | 'db'];
        return { docker: true, config: { docker: { enabled: true, driverName: d.driver, socket: d.socket } } };
      },
    });
    const [da, db] = [c.node('da'), c.node('db')];
    const containers: string[] = [];
    root.defer(() => cleanupDocker({
      driver: drivers.da.driver,
      containers,
      release: (v) => da.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
        if (e.kind !== 'NotFound') throw e;
      }),
    }));

    const name = uniqueName('shared-pg');
    await docker(['volume', 'create', '-d', drivers.da.driver, '-o', 'backend=sloop', '-o', 'size=64MiB', name]);
    const [info] = JSON.parse(await docker(['volume', 'inspect', name])) as Array<Record<string, any>>;
    expect(info).toMatchObject({ Name: name, Driver: drivers.da.driver, Scope: 'global' });
    expect(info!.Status.node).toBeUndefined(); // shared storage has no home node

    // A container on da holds it (Docker's default: one node at a time).
    const ctr = uniqueName('berth-cluster-fe');
    containers.push(ctr);
    await docker(['run', '-d', '--network', 'none', '--name', ctr, '-v', `${name}:/data`, TEST_IMAGE, 'sh', '-c', 'echo from-da > /data/f && sync && sleep 600']);
    await waitFor('the container on da to write', async () => (await da.client.inspectVolume(name)).mounts.length === 1 && (await docker(['exec', ctr, 'cat', '/data/f'])) === 'from-da');

    // Mesos on db: dvdcli mount through db's plugin socket.
    const bin = root.path('bin');
    mkdirSync(bin, { recursive: true });
    symlinkSync(join(REPO_ROOT, 'dist', 'dvdcli.cjs'), join(bin, 'dvdcli'));
    const dvdcli = (cmd: string) => execFile(join(bin, 'dvdcli'), [cmd, `--volumedriver=${drivers.db.driver}`, `--volumename=${name}`]);
    const refused = await dvdcli('mount');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^time="[^"]+" level=error msg=".*\\"da\\".*" \n$/);
    expect(refused.stderr.split('\n')).toHaveLength(2); // one line and its newline

    await docker(['rm', '-f', ctr]);
    await waitFor('da to release the volume', async () => (await db.client.inspectVolume(name)).attachments.length === 0);
    const mounted = await dvdcli('mount');
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(readFileSync(join(mounted.stdout.trim(), 'f'), 'utf8')).toBe('from-da\n');
    expect((await da.client.inspectVolume(name)).attachments.map((x) => x.node)).toEqual(['db']);
    expect((await dvdcli('unmount')).code).toBe(0);
    await docker(['volume', 'rm', name]);
    // Only the cluster's own views of the shared storage are left (its cleanup takes them down).
    expect(leftovers(root.dir).mounts.filter((m) => !m.startsWith(root.path('views')))).toEqual([]);
  });
});
