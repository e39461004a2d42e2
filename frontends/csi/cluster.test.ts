/**
 * The CSI frontend in cluster mode, in-process: two nodes (fe-a, fe-b) sharing one real etcd
 * catalog (test/helpers/fake-cluster.ts), each with its own CSI server on a unix socket, a
 * node-local fake backend ("local", loop-like) and a shared one ("shared"). Any node's
 * controller serves every node: node_id names a member of the cluster, attachments are the
 * catalog's, and a node-local volume carries its home node.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { createSilentLogger, defaultConfig } from '../../core/index.js';
import { createCsiClient, grpcError, mountCap, type CsiClient } from '../../test/helpers/csi-client.js';
import { startFakeCluster, type FakeCluster } from '../../test/helpers/fake-cluster.js';
import { useTmpRoots } from '../../test/helpers/tmp-root.js';
import { createCsiFrontend } from './index.js';

const roots = useTmpRoots();
const KEY = 'topology.csi.berth.dev/node';
const at = (node: string) => ({ segments: { [KEY]: node } });

async function cluster(label: string): Promise<{ c: FakeCluster; csi: Record<'a' | 'b', CsiClient> }> {
  const root = roots.create(label);
  const c = await startFakeCluster(root, {
    nodes: ['fe-a', 'fe-b'],
    backends: { local: { capabilities: LOOP_LIKE }, shared: { shared: true, capabilities: LOOP_LIKE } },
  });
  const csi = {} as Record<'a' | 'b', CsiClient>;
  for (const n of c.nodes) {
    const endpoint = root.path('run', n.id, 'csi.sock');
    const server = createCsiFrontend({ service: n.svc, config: { ...defaultConfig().csi, endpoint }, nodeId: n.id, version: 'test', log: createSilentLogger() });
    await server.start();
    const client = createCsiClient(endpoint);
    root.defer(() => server.stop()); // runs before the nodes close (LIFO)
    root.defer(() => client.close());
    csi[n.id === 'fe-a' ? 'a' : 'b'] = client;
  }
  return { c, csi };
}

const create = (on: CsiClient, name: string, backend: string, mode = 'SINGLE_NODE_WRITER', extra: object = {}) =>
  on.controller('CreateVolume', { name, volume_capabilities: [mountCap(mode)], parameters: { backend }, ...extra }).then((r) => r.volume);
const publish = (on: CsiClient, volume_id: string, node_id: string, mode = 'SINGLE_NODE_WRITER') =>
  on.controller('ControllerPublishVolume', { volume_id, node_id, volume_capability: mountCap(mode), readonly: false });

describe('csi in cluster mode (two nodes, one catalog)', () => {
  it('topology: each node reports its own segment; a node-local volume carries its home node seen from any node; a shared one none', async () => {
    const { csi } = await cluster('csi-cl-topo');
    expect((await csi.a.node('NodeGetInfo')).accessible_topology).toEqual(at('fe-a'));
    expect((await csi.b.node('NodeGetInfo')).accessible_topology).toEqual(at('fe-b'));
    const local = await create(csi.a, 'pg-local', 'local');
    const shared = await create(csi.a, 'pg-shared', 'shared');
    expect(local.accessible_topology).toEqual([at('fe-a')]);
    expect(shared.accessible_topology).toEqual([]);
    // From the other node's controller: the same answer (the home node is in the catalog).
    expect((await csi.b.controller('ControllerGetVolume', { volume_id: local.volume_id })).volume.accessible_topology).toEqual([at('fe-a')]);
    const listed = Object.fromEntries((await csi.b.controller('ListVolumes', {})).entries.map((e: any) => [e.volume.volume_id, e.volume.accessible_topology]));
    expect(listed).toEqual({ [local.volume_id]: [at('fe-a')], [shared.volume_id]: [] });
  });

  it('distributed provisioning: a node-local volume the CO wants on fe-b is refused by fe-a and made by fe-b, where it lives', async () => {
    const { csi } = await cluster('csi-cl-prov');
    const accessibility_requirements = { requisite: [at('fe-a'), at('fe-b')], preferred: [at('fe-b'), at('fe-a')] };
    const e = await grpcError(create(csi.a, 'pvc-7', 'local', undefined, { accessibility_requirements }));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/^accessibility_requirements: .*"fe-b"/);
    expect((await csi.b.controller('ListVolumes', {})).entries).toEqual([]);
    const v = await create(csi.b, 'pvc-7', 'local', undefined, { accessibility_requirements });
    expect(v.accessible_topology).toEqual([at('fe-b')]);
    // A shared volume wanted on fe-b is made by whichever controller is asked.
    expect((await create(csi.a, 'pvc-8', 'shared', undefined, { accessibility_requirements })).accessible_topology).toEqual([]);
  });

  it('ControllerPublish records the attachment of the named node, from any node; a second node is FAILED_PRECONDITION naming the holder', async () => {
    const { c, csi } = await cluster('csi-cl-pub');
    const v = await create(csi.a, 'web', 'shared');
    // fe-a's controller publishes to fe-b: the record is fe-b's, seen from both nodes.
    expect(await publish(csi.a, v.volume_id, 'fe-b')).toEqual({ publish_context: {} }); // the device is attached by fe-b at NodeStage
    for (const on of [csi.a, csi.b]) {
      expect((await on.controller('ControllerGetVolume', { volume_id: v.volume_id })).status.published_node_ids).toEqual(['fe-b']);
    }
    expect((await c.node('fe-a').svc.inspect('web', { frontend: 'core' })).attachments.map((x) => [x.node, x.implicit])).toEqual([['fe-b', false]]);
    expect(await publish(csi.b, v.volume_id, 'fe-b')).toEqual({ publish_context: {} }); // idempotent, from the other controller too

    for (const on of [csi.a, csi.b]) {
      const e = await grpcError(publish(on, v.volume_id, 'fe-a'));
      expect(e.code).toBe(status.FAILED_PRECONDITION);
      expect(e.details).toMatch(/fe-b/);
    }
    // Released by fe-b: fe-a may have it, and publishes with its device (this node attaches).
    expect(await csi.a.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'fe-b' })).toEqual({});
    expect((await publish(csi.b, v.volume_id, 'fe-a')).publish_context).toEqual({});
    expect((await publish(csi.a, v.volume_id, 'fe-a')).publish_context).toEqual({});
    expect((await csi.b.controller('ControllerGetVolume', { volume_id: v.volume_id })).status.published_node_ids).toEqual(['fe-a']);
  });

  it('node_id must be a member of the cluster (NOT_FOUND otherwise); a node-local volume is published only to its home node', async () => {
    const { csi } = await cluster('csi-cl-nodes');
    const shared = await create(csi.a, 'any', 'shared');
    const e = await grpcError(publish(csi.a, shared.volume_id, 'fe-nope'));
    expect([e.code, e.details]).toEqual([status.NOT_FOUND, expect.stringMatching(/node fe-nope is not a member of this berth cluster/)]);
    const local = await create(csi.a, 'mine', 'local');
    const f = await grpcError(publish(csi.b, local.volume_id, 'fe-b'));
    expect([f.code, f.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/lives on node fe-a/)]);
    expect((await publish(csi.b, local.volume_id, 'fe-a')).publish_context.device).toBeUndefined(); // recorded for fe-a by fe-b's controller
    // Unpublish from a node berth does not know: already unpublished, OK.
    expect(await csi.b.controller('ControllerUnpublishVolume', { volume_id: local.volume_id, node_id: 'fe-nope' })).toEqual({});
  });

  it('published_node_ids lists every node\'s attachment: a multi-node volume published to both, Docker-style mounts included', async () => {
    const { c, csi } = await cluster('csi-cl-list');
    const rwx = await create(csi.a, 'data', 'shared', 'MULTI_NODE_MULTI_WRITER');
    await publish(csi.a, rwx.volume_id, 'fe-a', 'MULTI_NODE_MULTI_WRITER');
    await publish(csi.a, rwx.volume_id, 'fe-b', 'MULTI_NODE_MULTI_WRITER');
    const rwo = await create(csi.b, 'solo', 'shared');
    // A consumer of another frontend on fe-b (Docker, dvdcli): its implicit attachment holds the volume too.
    await c.node('fe-b').svc.mount({ ref: 'solo', consumer: 'docker:0123' }, { frontend: 'docker' });
    for (const on of [csi.a, csi.b]) {
      const got = Object.fromEntries((await on.controller('ListVolumes', {})).entries.map((e: any) => [e.volume.volume_id, [...e.status.published_node_ids].sort()]));
      expect(got).toEqual({ [rwx.volume_id]: ['fe-a', 'fe-b'], [rwo.volume_id]: ['fe-b'] });
    }
    const e = await grpcError(publish(csi.a, rwo.volume_id, 'fe-a'));
    expect([e.code, e.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/fe-b/)]);
    await c.node('fe-b').svc.unmount({ ref: 'solo', consumer: 'docker:0123' }, { frontend: 'docker' });
  });
});
