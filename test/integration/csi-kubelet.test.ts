// CSI node calls as kubelet v1.26 makes them (test/helpers/kubelet-csi.ts), against a real
// daemon: kubelet makes the staging dir and the target's parent, berth makes the target (a
// directory, or a file for block), and after NodeUnpublish / NodeUnstage kubelet removes the
// directory, vol_data.json and the parent only when its mount-point rule (st_dev against the
// parent's) says nothing is mounted there. Whatever kubelet would have to keep or could not
// remove fails the test, on dir (binds on kubelet's own disk) as on loop.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { blockCap, createCsiClient, grpcError, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CsiKubelet } from '../helpers/kubelet-csi.js';
import { isLikelyNotMountPoint } from '../helpers/kubelet-mount.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const MiB = 2 ** 20;

async function start(label: string): Promise<{ d: TestDaemon; c: CsiClient; root: TmpRoot; k: CsiKubelet }> {
  const root = roots.create(label);
  const d = await startTestDaemon(root, { csi: true });
  const c = createCsiClient(d.csiEndpoint);
  root.defer(() => c.close());
  return { d, c, root, k: new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev') };
}

/** Nothing kubelet kept or failed to remove, and nothing mounted under kubelet's dir. */
function expectClean(k: CsiKubelet, root: TmpRoot): void {
  expect(k.log.filter((l) => l.startsWith('kept'))).toEqual([]);
  expect(leftovers(root.dir).mounts.filter((m) => m.startsWith(root.path('kubelet')))).toEqual([]);
}

describe('CSI node service under kubelet\'s directory and mount-point rules', () => {
  for (const [label, params, size] of [['dir', { backend: 'local' }, 16 * MiB], ['loop', { backend: 'loop', fs: 'ext4' }, 64 * MiB]] as const) {
    it(`${label}: stage, two pods, teardown in kubelet's order; kubelet removes every directory it made`, async () => {
      const { c, root, k } = await start(`csik-${label}`);
      const vol = (await c.controller('CreateVolume', {
        name: `pvc-${label}`, capacity_range: { required_bytes: String(size) }, volume_capabilities: [mountCap()], parameters: params,
      })).volume;
      const spec = { volumeId: vol.volume_id, pvName: `pv-${label}`, cap: mountCap(), context: vol.volume_context };
      const staging = await k.mountDevice(spec);
      // At the staging path berth leaves a mount only where kubelet's rule sees one: loop's own
      // filesystem; a dir volume is not bound there at all (a bind on kubelet's disk would look unmounted).
      expect(leftovers(root.dir).mounts.includes(staging)).toBe(label === 'loop');
      expect(isLikelyNotMountPoint(staging)).toBe(label === 'dir');
      const a = await k.setUp({ ...spec, staging }, { uid: `${label}-pod-a` });
      const b = await k.setUp({ ...spec, staging, readOnly: true }, { uid: `${label}-pod-b` });
      writeFileSync(join(a, 'x'), 'from pod a');
      expect(readFileSync(join(b, 'x'), 'utf8')).toBe('from pod a');
      // kubelet retries a SetUp whose answer it lost: same answer, nothing stacked.
      expect(await k.setUp({ ...spec, staging }, { uid: `${label}-pod-a` })).toBe(a);

      await k.tearDown(vol.volume_id, a);
      await k.tearDown(vol.volume_id, b);
      expect(existsSync(join(a, '..'))).toBe(false); // the pod's volume dir, vol_data.json and all
      await k.unmountDevice(vol.volume_id, staging);
      expect(existsSync(join(staging, '..'))).toBe(false);
      // A retried NodeUnpublish after kubelet removed the target: nothing to do, no error.
      await c.node('NodeUnpublishVolume', { volume_id: vol.volume_id, target_path: a });
      expectClean(k, root);
      await c.controller('DeleteVolume', { volume_id: vol.volume_id });
    });
  }

  it('an older kubelet (< 1.20) that makes the target itself: berth binds into it, leaves it, kubelet removes it', async () => {
    const { d, c, root } = await start('csik-old');
    const k = new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev', { createsTarget: true });
    const vol = (await c.controller('CreateVolume', { name: 'pvc-old', volume_capabilities: [mountCap()] })).volume;
    const spec = { volumeId: vol.volume_id, pvName: 'pv-old', cap: mountCap() };
    const staging = await k.mountDevice(spec);
    const target = await k.setUp({ ...spec, staging }, { uid: 'old-pod' });
    writeFileSync(join(target, 'x'), 'y');
    const eph = await k.setUpEphemeral({ uid: 'old-pod' }, 'scratch', {});
    expect((await d.client.inspectVolume(eph.volumeId)).mounts).toMatchObject([{ target: eph.target }]);
    await k.tearDown(vol.volume_id, target);
    await k.tearDown(eph.volumeId, eph.target);
    await k.unmountDevice(vol.volume_id, staging);
    expect(k.log).toEqual([`removed ${target}`, `removed ${eph.target}`, `removed ${staging}`]);
    expect((await d.client.listVolumes()).map((v) => v.name)).toEqual(['pvc-old']);
    expectClean(k, root);
  });

  it('loop block: berth makes the device file, unpublish removes it, kubelet\'s cleanup of the publish and staging dirs succeeds', async () => {
    const { c, root, k } = await start('csik-block');
    const vol = (await c.controller('CreateVolume', {
      name: 'pvc-block', capacity_range: { required_bytes: String(32 * MiB) }, volume_capabilities: [blockCap()], parameters: { backend: 'loop' },
    })).volume;
    const spec = { volumeId: vol.volume_id, pvName: 'pv-block', cap: blockCap() };
    const { publish } = await k.mapBlock(spec, { uid: 'block-pod' });
    await k.unmapBlock(vol.volume_id, 'pv-block', 'block-pod');
    expect(existsSync(publish)).toBe(false);
    const { staging } = k.blockPaths('pv-block', 'block-pod');
    expect(k.log).toEqual([`removed ${join(publish, '..')}`]);
    expect(existsSync(staging)).toBe(false);
    expectClean(k, root);
    await c.controller('DeleteVolume', { volume_id: vol.volume_id });
  });

  it('a refused NodePublish leaves nothing kubelet\'s clean-up cannot remove', async () => {
    const { c, root, k } = await start('csik-refused');
    const vol = (await c.controller('CreateVolume', { name: 'pvc-refused', volume_capabilities: [mountCap()] })).volume;
    const spec = { volumeId: vol.volume_id, pvName: 'pv-refused', cap: mountCap() };
    const staging = await k.mountDevice(spec);
    const bad = { ...spec, cap: mountCap('SINGLE_NODE_WRITER', '', ['exec-all']) };
    const e = await grpcError(k.setUp({ ...bad, staging }, { uid: 'refused-pod' }));
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(k.log).toEqual([`removed ${k.targetPath('refused-pod', 'pv-refused')}`]);
    expect(existsSync(k.targetPath('refused-pod', 'pv-refused'))).toBe(false);
    await k.unmountDevice(vol.volume_id, staging);
    expectClean(k, root);
  });
});
