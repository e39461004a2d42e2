/**
 * The CSI size limits and bounded answers, in-process over berth's gRPC server (transport.ts) and a grpc-js
 * client on a unix socket (issue 9): an oversized field is INVALID_ARGUMENT naming it,
 * answered at once, and the CO's channel keeps working afterwards.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { BerthError } from '../../core/index.js';
import { grpcError, mountCap } from '../../test/helpers/csi-client.js';
import { useInProcessCsi } from '../../test/helpers/csi-in-process.js';
import { toGrpcError } from './errors.js';
import { checkRequestLimits } from './limits.js';

const csiEnvs = useInProcessCsi('limits');
const setup = () => csiEnvs.start({ backends: { local: { capabilities: LOOP_LIKE } } });

/** The call's error, failing the test when it takes more than `ms` (the bug: no answer at all). */
async function quickError(p: Promise<unknown>, ms = 5_000): Promise<{ code: number; details: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([grpcError(p), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const huge = (n: number) => 'v'.repeat(n);
const STAGE = '/nonexistent-berth-test/staging';

describe('CSI request size limits', () => {
  it('answers a 200 KB or 1 MB volume_id at once with INVALID_ARGUMENT naming it, and the channel keeps working', async () => {
    const { c } = await setup();
    const calls: Array<[string, () => Promise<unknown>]> = [];
    for (const n of [200_000, 1_000_000]) {
      calls.push(
        ['ControllerGetVolume', () => c.controller('ControllerGetVolume', { volume_id: huge(n) })],
        ['NodeStageVolume', () => c.node('NodeStageVolume', { volume_id: huge(n), staging_target_path: STAGE, volume_capability: mountCap() })],
        ['NodeUnpublishVolume', () => c.node('NodeUnpublishVolume', { volume_id: huge(n), target_path: `${STAGE}/t` })],
        ['DeleteVolume', () => c.controller('DeleteVolume', { volume_id: huge(n) })],
      );
    }
    for (const [method, call] of calls) {
      const e = await quickError(call());
      expect({ method, code: e.code, details: e.details.slice(0, 60) }).toEqual({
        method, code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^volume_id: is \d+ bytes; CSI allows at most 128/),
      });
      expect(e.details.length).toBeLessThan(200);
    }
    // The same channel still answers.
    expect((await c.identity('Probe')).ready).toEqual({ value: true });
  });

  it.each([
    ['CreateVolume name', 'controller', 'CreateVolume', { name: huge(129), volume_capabilities: [mountCap()] }, 'name'],
    ['CreateVolume parameters', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap()], parameters: { a: huge(4100) } }, 'parameters'],
    ['CreateVolume secrets', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap()], secrets: { a: huge(4100) } }, 'secrets'],
    ['CreateVolume mutable_parameters', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap()], mutable_parameters: { a: huge(4100) } }, 'mutable_parameters'],
    ['CreateVolume fs_type', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap('SINGLE_NODE_WRITER', huge(129))] }, 'volume_capabilities[0].mount.fs_type'],
    ['CreateVolume topology segments', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap()], accessibility_requirements: { requisite: [{ segments: { k: huge(4100) } }] } }, 'accessibility_requirements.requisite[0].segments'],
    ['CreateVolume content source', 'controller', 'CreateVolume', { name: 'p', volume_capabilities: [mountCap()], volume_content_source: { snapshot: { snapshot_id: huge(129) } } }, 'volume_content_source.snapshot.snapshot_id'],
    ['ControllerPublishVolume node_id', 'controller', 'ControllerPublishVolume', { volume_id: 'v', node_id: huge(257), volume_capability: mountCap() }, 'node_id'],
    ['ControllerPublishVolume volume_context', 'controller', 'ControllerPublishVolume', { volume_id: 'v', node_id: 'n', volume_capability: mountCap(), volume_context: { [huge(4100)]: '' } }, 'volume_context'],
    ['ListVolumes starting_token', 'controller', 'ListVolumes', { starting_token: huge(129) }, 'starting_token'],
    ['CreateSnapshot source_volume_id', 'controller', 'CreateSnapshot', { source_volume_id: huge(129), name: 's' }, 'source_volume_id'],
    ['DeleteSnapshot snapshot_id', 'controller', 'DeleteSnapshot', { snapshot_id: huge(129) }, 'snapshot_id'],
    ['NodeStageVolume publish_context', 'node', 'NodeStageVolume', { volume_id: 'v', staging_target_path: STAGE, volume_capability: mountCap(), publish_context: { d: huge(4100) } }, 'publish_context'],
    ['NodeStageVolume staging_target_path', 'node', 'NodeStageVolume', { volume_id: 'v', staging_target_path: `/${huge(4096)}`, volume_capability: mountCap() }, 'staging_target_path'],
    ['NodePublishVolume target_path', 'node', 'NodePublishVolume', { volume_id: 'v', staging_target_path: STAGE, target_path: `/${huge(4096)}`, volume_capability: mountCap() }, 'target_path'],
    ['NodePublishVolume mount_flags', 'node', 'NodePublishVolume', { volume_id: 'v', staging_target_path: STAGE, target_path: `${STAGE}/t`, volume_capability: mountCap('SINGLE_NODE_WRITER', '', Array.from({ length: 50 }, () => huge(100))) }, 'volume_capability.mount.mount_flags'],
    ['NodeGetVolumeStats volume_path', 'node', 'NodeGetVolumeStats', { volume_id: 'v', volume_path: `/${huge(4096)}` }, 'volume_path'],
  ] as const)('%s over its limit is INVALID_ARGUMENT naming the field', async (_, service, method, req, field) => {
    const { c } = await setup();
    const call = service === 'controller' ? c.controller(method, req) : c.node(method, req);
    const e = await quickError(call);
    expect({ code: e.code, field: e.details.slice(0, e.details.indexOf(':')) }).toEqual({ code: status.INVALID_ARGUMENT, field });
  });

  it('takes fields at their limits: the check is not what refuses them', () => {
    expect(() => checkRequestLimits({
      name: huge(128), node_id: huge(256), target_path: `/${huge(4095)}`, parameters: { [huge(96)]: huge(4000) },
      volume_capability: { mount: { fs_type: 'ext4', mount_flags: Array.from({ length: 40 }, () => huge(100)) } },
    })).not.toThrow();
    // A multi-byte character counts its bytes.
    expect(() => checkRequestLimits({ name: 'é'.repeat(65) })).toThrow(expect.objectContaining({ field: 'name' }));
  });

  it('keeps a parameter keyed __proto__ and refuses it by name instead of dropping it', async () => {
    const { c, h } = await setup();
    const e = await quickError(c.controller('CreateVolume', { name: 'p', volume_capabilities: [mountCap()], parameters: JSON.parse('{"__proto__":"x"}') }));
    expect([e.code, e.details.split(':')[0]]).toEqual([status.INVALID_ARGUMENT, 'parameters.__proto__']);
    expect(await h.svc.list({}, { frontend: 'csi' })).toEqual([]);
  });

  it('refuses a request message over 1 MiB before decoding it, and the channel keeps working', async () => {
    const { c } = await setup();
    const e = await quickError(c.controller('CreateVolume', { name: 'p', volume_capabilities: [mountCap()], parameters: { a: huge(2 * 1024 * 1024) } }));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect((await c.identity('Probe')).ready).toEqual({ value: true });
  });

  it('names a size past the backend range as the request gave it, OUT_OF_RANGE', async () => {
    const { c } = await setup();
    const huge64 = '9223372036854775807';
    const e = await quickError(c.controller('CreateVolume', { name: 'p', volume_capabilities: [mountCap()], capacity_range: { required_bytes: huge64 } }));
    expect([e.code, e.details.split(':')[0]]).toEqual([status.OUT_OF_RANGE, 'capacity_range.required_bytes']);
  });
});

describe('CSI error answers', () => {
  it('bound the status message whatever the error carried (a long grpc-message trailer breaks the channel)', () => {
    const fromBerth = toGrpcError(new BerthError('NotFound', `volume ${huge(1_000_000)} does not exist`));
    expect(fromBerth.details.length).toBeLessThan(2200);
    const fromStatus = toGrpcError(Object.assign(new Error('x'), { code: status.ABORTED, details: huge(1_000_000) }));
    expect(fromStatus.code).toBe(status.ABORTED);
    expect(fromStatus.details.length).toBeLessThan(2200);
  });
});
