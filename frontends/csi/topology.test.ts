/**
 * CSI topology on a single node, in-process: berth's gRPC server on a unix socket in front
 * of the real core with fake backends, one node-local ("local") and one shared ("nfs",
 * scope global). What a volume's accessible_topology says, how CreateVolume honours
 * accessibility_requirements, and what GetCapacity answers for another node's segment.
 * The cluster side (two nodes on one etcd) is in cluster.test.ts.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { grpcError, mountCap } from '../../test/helpers/csi-client.js';
import { useInProcessCsi, type FakeBackends } from '../../test/helpers/csi-in-process.js';
import { topologyKeyFor, wantedNodes, type CsiIdentity } from './topology.js';

const KEY = 'topology.csi.berth.dev/node';
const at = (node: string) => ({ segments: { [KEY]: node } });
const csiEnvs = useInProcessCsi('topo');
const setup = (backends: FakeBackends = {
  local: { capabilities: LOOP_LIKE },
  nfs: { capabilities: { scope: 'global', sizeEnforced: true } },
}) => csiEnvs.start({ backends, targetsUnderDir: true });

describe('wantedNodes: accessibility requirements -> the nodes the volume is wanted on', () => {
  const id: CsiIdentity = { driverName: 'csi.berth.dev', nodeId: 'node-a', topologyKey: topologyKeyFor('csi.berth.dev') };

  it('takes the first preferred node alone (the node the pod was scheduled to), else every requisite node', () => {
    // external-provisioner, delayed binding without --strict-topology: every node, the selected one first.
    expect(wantedNodes({ requisite: [at('node-a'), at('node-b')], preferred: [at('node-b'), at('node-a')] }, id)).toEqual(['node-b']);
    // --strict-topology: requisite = preferred = the selected node.
    expect(wantedNodes({ requisite: [at('node-a')], preferred: [at('node-a')] }, id)).toEqual(['node-a']);
    expect(wantedNodes({ requisite: [at('node-b'), at('node-c'), at('node-b')], preferred: [] }, id)).toEqual(['node-b', 'node-c']);
  });

  it('wants any node when nothing names one: no requirements, or a term without berth\'s key', () => {
    expect(wantedNodes(null, id)).toBeUndefined();
    expect(wantedNodes({ requisite: [], preferred: [] }, id)).toBeUndefined();
    expect(wantedNodes({ requisite: [at('node-b'), { segments: { 'topology.kubernetes.io/zone': 'z1' } }], preferred: [] }, id)).toBeUndefined();
    // A preferred term of other keys falls back to requisite.
    expect(wantedNodes({ requisite: [at('node-c')], preferred: [{ segments: { zone: 'z1' } }] }, id)).toEqual(['node-c']);
  });
});

describe('csi topology on a single node', () => {
  it('always advertises VOLUME_ACCESSIBILITY_CONSTRAINTS and reports the node\'s segment, even with shared backends only', async () => {
    for (const backends of [undefined, { nfs: { capabilities: { scope: 'global' as const } } }]) {
      const { c } = await setup(backends);
      const caps = (await c.identity('GetPluginCapabilities')).capabilities;
      expect(caps).toContainEqual(expect.objectContaining({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } }));
      expect((await c.node('NodeGetInfo')).accessible_topology).toEqual(at('node-a'));
    }
  });

  it('a node-local volume is reachable from this node; a shared one carries no constraint (every node)', async () => {
    const { c } = await setup();
    const local = (await c.controller('CreateVolume', { name: 'l', volume_capabilities: [mountCap()], parameters: { backend: 'local' } })).volume;
    const shared = (await c.controller('CreateVolume', { name: 's', volume_capabilities: [mountCap()], parameters: { backend: 'nfs' } })).volume;
    expect(local.accessible_topology).toEqual([at('node-a')]);
    expect(shared.accessible_topology).toEqual([]);
    const listed = Object.fromEntries((await c.controller('ListVolumes', {})).entries.map((e: any) => [e.volume.volume_id, e.volume.accessible_topology]));
    expect(listed).toEqual({ [local.volume_id]: [at('node-a')], [shared.volume_id]: [] });
  });

  it('refuses a node-local volume wanted on another node with RESOURCE_EXHAUSTED naming accessibility_requirements, and makes nothing', async () => {
    const { c, h } = await setup();
    const req = { name: 'pvc-1', volume_capabilities: [mountCap()], parameters: { backend: 'local' } };
    const cases = [
      { requisite: [at('node-b')], preferred: [] },
      // This node is in requisite, but the CO's first choice (the pod's node) is node-b.
      { requisite: [at('node-a'), at('node-b')], preferred: [at('node-b'), at('node-a')] },
    ];
    for (const accessibility_requirements of cases) {
      const e = await grpcError(c.controller('CreateVolume', { ...req, accessibility_requirements }));
      expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(e.details).toMatch(/^accessibility_requirements: backend "local" .*this is node "node-a".*"node-b"/);
    }
    expect(await h.svc.list({}, { frontend: 'core' })).toEqual([]);

    const here = (await c.controller('CreateVolume', {
      ...req, accessibility_requirements: { requisite: [at('node-a'), at('node-b')], preferred: [at('node-a'), at('node-b')] },
    })).volume;
    expect(here.accessible_topology).toEqual([at('node-a')]);
    // A shared volume is reachable from node-b too: made here, no constraint.
    const shared = (await c.controller('CreateVolume', {
      name: 'pvc-2', volume_capabilities: [mountCap()], parameters: { backend: 'nfs' }, accessibility_requirements: { requisite: [at('node-b')], preferred: [at('node-b')] },
    })).volume;
    expect(shared.accessible_topology).toEqual([]);
  });

  it('GetCapacity for another node\'s segment counts only the shared backends', async () => {
    const { c } = await setup();
    const all = Number((await c.controller('GetCapacity', {})).available_capacity);
    const mine = Number((await c.controller('GetCapacity', { accessible_topology: at('node-a') })).available_capacity);
    const there = Number((await c.controller('GetCapacity', { accessible_topology: at('node-b') })).available_capacity);
    const nfsOnly = Number((await c.controller('GetCapacity', { parameters: { backend: 'nfs' } })).available_capacity);
    expect(mine).toBe(all);
    expect(there).toBe(nfsOnly);
    expect(nfsOnly).toBeGreaterThan(0);
    expect(there).toBeLessThan(all);
    expect(Number((await c.controller('GetCapacity', { parameters: { backend: 'local' }, accessible_topology: at('node-b') })).available_capacity)).toBe(0);
  });
});
