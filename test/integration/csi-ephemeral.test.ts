// CSI ephemeral inline volumes against a real daemon, driven like kubelet v1.26 drives them
// (test/helpers/kubelet-csi.ts): NodePublish with no staging, volume_id csi-<sha256>, the
// pod volume's attributes plus the pod's identity and csi.storage.k8s.io/ephemeral=true in
// volume_context; NodeUnpublish, then kubelet's removeMountDir. On dir and loop: the volume is
// made at publish and gone after unpublish, bad attributes are named, and a kill -9 at exact
// points of either converges at restart (no reference: removed; reference: re-established).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createCsiClient, grpcError, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createHoldServer, reached, type HoldPoint } from '../helpers/holds.js';
import { CsiKubelet, ephemeralVolumeHandle } from '../helpers/kubelet-csi.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

async function start(label: string, config: Record<string, unknown> = {}, withHolds = false) {
  const root = roots.create(label);
  const holds = withHolds ? await createHoldServer(root) : null;
  const d = await startTestDaemon(root, { csi: true, config, ...(holds ? { env: holds.env } : {}) });
  let c = createCsiClient(d.csiEndpoint);
  let k = new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev');
  root.defer(() => c.close());
  return {
    d, root, holds,
    get c() {
      return c;
    },
    get k() {
      return k;
    },
    /** A new client and kubelet model after the daemon restarted (kubelet keeps its own directories). */
    reconnect() {
      c.close();
      c = createCsiClient(d.csiEndpoint);
      const log = k.log;
      k = new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev');
      k.log.push(...log);
    },
  };
}

const mountedAt = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);

/** Nothing of the volume anywhere: no record, no data, nothing mounted or attached under the root. */
async function expectGone(d: TestDaemon, root: TmpRoot, name: string): Promise<void> {
  expect((await d.client.listVolumes()).map((v) => v.name)).not.toContain(name);
  const images = join(d.stateRoot, 'backends', 'loop');
  expect(existsSync(images) ? readdirSync(images).filter((f) => f.endsWith('.img')) : []).toEqual([]);
  const dirs = join(d.stateRoot, 'backends', 'local');
  expect(existsSync(dirs) ? readdirSync(dirs).filter((f) => f.startsWith('vol-')) : []).toEqual([]);
  expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
}

const ATTRIBUTES = {
  dir: { backend: 'local' },
  loop: { backend: 'loop', size: '64Mi', 'label.team': 'scratch' },
} as const;

describe('CSI ephemeral inline volumes', () => {
  for (const backend of ['dir', 'loop'] as const) {
    it(`${backend}: made by NodePublish, used by the pod, removed by NodeUnpublish; kubelet removes its dirs`, async () => {
      const { d, c, k, root } = await start(`csie-${backend}`);
      const pod = { uid: `pod-${backend}`, name: 'web-0', namespace: 'apps' };
      const { volumeId, target } = await k.setUpEphemeral(pod, 'scratch', ATTRIBUTES[backend], { fsType: backend === 'loop' ? 'ext4' : '' });
      expect(volumeId).toBe(ephemeralVolumeHandle(pod.uid, 'scratch'));
      const vol = await d.client.inspectVolume(volumeId);
      expect(vol).toMatchObject({
        name: volumeId, backend: backend === 'dir' ? 'local' : 'loop', accessMode: 'ReadWriteOncePod', status: 'ready',
        labels: { 'berth.dev/ephemeral': 'true', 'csi.storage.k8s.io/pod.name': 'web-0', 'csi.storage.k8s.io/pod.namespace': 'apps', 'csi.storage.k8s.io/pod.uid': pod.uid },
        mounts: [{ consumer: `csi:${target}`, target }],
      });
      if (backend === 'loop') expect(vol).toMatchObject({ sizeBytes: 64 * 2 ** 20, fsType: 'ext4', labels: { team: 'scratch' } });
      writeFileSync(join(target, 'tmp.dat'), 'scratch data');
      expect(readFileSync(join(vol.path!, 'tmp.dat'), 'utf8')).toBe('scratch data');
      const stats = await c.node('NodeGetVolumeStats', { volume_id: volumeId, volume_path: target });
      expect(Number(stats.usage.find((u: { unit: string }) => u.unit === 'BYTES').total)).toBeGreaterThan(0);
      // kubelet repeats a NodePublish whose answer it lost: same volume, nothing stacked.
      expect(await k.setUpEphemeral(pod, 'scratch', ATTRIBUTES[backend], { fsType: backend === 'loop' ? 'ext4' : '' })).toEqual({ volumeId, target });
      expect((await d.client.inspectVolume(volumeId)).mounts).toHaveLength(1);

      await k.tearDown(volumeId, target);
      expect(k.log).toEqual([`removed ${target}`]);
      expect(existsSync(join(target, '..'))).toBe(false);
      await expectGone(d, root, volumeId);
      // ... and repeats the NodeUnpublish: the volume is gone, which is what it asked for.
      await c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
      // A new pod with the same volume name gets a new, empty volume.
      const again = await k.setUpEphemeral({ uid: 'pod-next' }, 'scratch', ATTRIBUTES[backend]);
      expect(readdirSync(again.target)).toEqual([]);
      await k.tearDown(again.volumeId, again.target);
      await expectGone(d, root, again.volumeId);
    });
  }

  it('refuses bad attributes naming them, and leaves no volume and nothing kubelet cannot clean up', async () => {
    const { d, c, k, root } = await start('csie-bad');
    const cases: Array<[Record<string, string>, string, number]> = [
      [{ size: 'lots' }, 'volume_context.size', status.INVALID_ARGUMENT],
      [{ backend: 'nope' }, 'volume_context.backend', status.INVALID_ARGUMENT],
      [{ backend: 'loop', bogus: '1' }, 'volume_context.bogus', status.INVALID_ARGUMENT],
      [{ fs: 'ntfs' }, 'volume_context.fs', status.INVALID_ARGUMENT],
      [{ backend: 'loop', size: '64Mi', fs: 'xfs' }, 'volume_context.size', status.OUT_OF_RANGE], // mkfs.xfs needs 300 MiB
      [{ fromSnapshot: 'snap-1' }, 'volume_context.fromSnapshot', status.INVALID_ARGUMENT],
      [{ 'label.berth.dev/ephemeral': 'false' }, 'volume_context.label.berth.dev/ephemeral', status.INVALID_ARGUMENT],
    ];
    for (const [i, [attributes, field, code]] of cases.entries()) {
      const e = await grpcError(k.setUpEphemeral({ uid: `bad-${i}` }, 'v', attributes));
      expect({ field, code: e.code }).toEqual({ field, code });
      expect(e.details).toContain(field);
    }
    expect(k.log).toEqual(cases.map((_, i) => `removed ${k.targetPath(`bad-${i}`, 'v')}`));
    for (const i of cases.keys()) expect(existsSync(join(k.targetPath(`bad-${i}`, 'v'), '..'))).toBe(false);
    expect(await d.client.listVolumes()).toEqual([]);

    const base = { volume_id: ephemeralVolumeHandle('p', 'v'), target_path: root.path('kubelet', 'pods', 'p', 'v', 'mount'), volume_context: { 'csi.storage.k8s.io/ephemeral': 'true' } };
    const staged = await grpcError(c.node('NodePublishVolume', { ...base, staging_target_path: root.path('s'), volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } } }));
    expect(staged).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('staging_target_path') });
    const block = await grpcError(c.node('NodePublishVolume', { ...base, volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } } }));
    expect(block).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('volume_capability') });
    // An unpublish of a volume that never existed: done for kubelet's handles, NOT_FOUND otherwise.
    await c.node('NodeUnpublishVolume', { volume_id: base.volume_id, target_path: base.target_path });
    expect((await grpcError(c.node('NodeUnpublishVolume', { volume_id: 'fake-vol-id-1', target_path: base.target_path }))).code).toBe(status.NOT_FOUND);
    expect(await d.client.listVolumes()).toEqual([]);
  });

  it('without podInfoOnMount kubelet sends no ephemeral flag: refused as an unstaged publish, with the reason', async () => {
    const { c, root } = await start('csie-nopodinfo');
    const k = new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev', { podInfoOnMount: false });
    const e = await grpcError(k.setUpEphemeral({ uid: 'p' }, 'v', {}));
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/staging_target_path: is required.*csi\.storage\.k8s\.io\/ephemeral.*podInfoOnMount/);
  });

  it('with csi.ephemeral: false an ephemeral publish is FAILED_PRECONDITION and makes nothing', async () => {
    const { d, k } = await start('csie-off', { csi: { ephemeral: false } });
    const e = await grpcError(k.setUpEphemeral({ uid: 'p' }, 'v', {}));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('csi.ephemeral: false');
    expect(await d.client.listVolumes()).toEqual([]);
  });
});

/** Loop devices whose backing file is under `dir`. */
function loopsUnder(dir: string): string[] {
  const out = execFileSync('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  if (!out.trim()) return [];
  return (JSON.parse(out) as { loopdevices: Array<{ name: string; 'back-file': string | null }> }).loopdevices
    .filter((l) => (l['back-file'] ?? '').startsWith(`${dir}/`)).map((l) => l.name);
}

// Exact kill points (core/test-holds.ts): the daemon waits right after (or before) a backend
// step, before the core records it, until the test kills it. Publish: inside the create (row
// still 'creating': rolled back), and with the volume made and its reference pending (between
// create and mount: dropped, then the unreferenced volume removed). Unpublish: with the mount
// gone but the reference still recorded (re-established until kubelet's retry), and with the
// reference gone and the removal begun (between unmount and remove: 'deleting', rolled forward).
// Between a create's commit and its mount's pending row, or an unmount's commit and the
// removal's 'deleting' row, the daemon does no I/O at all; that state is written into the store
// directly in core/ephemeral.test.ts.
describe('CSI ephemeral inline volumes across kill -9', () => {
  const images = (d: TestDaemon) => join(d.stateRoot, 'backends', 'loop');
  const imageCount = (d: TestDaemon) => (existsSync(images(d)) ? readdirSync(images(d)).filter((f) => f.endsWith('.img')).length : 0);
  const dirVolumes = (d: TestDaemon) => {
    const dir = join(d.stateRoot, 'backends', 'local');
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('vol-')).length : 0;
  };
  const managedMounted = (d: TestDaemon) => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${join(d.stateRoot, 'mounts')}/`);

  type Point = { label: string; backend: 'dir' | 'loop'; at: Partial<HoldPoint>; check: (d: TestDaemon, target: string) => void };
  const instance = (b: 'dir' | 'loop') => (b === 'dir' ? 'local' : 'loop');

  const publishPoints: Point[] = [
    { label: 'inside the create (the directory made)', backend: 'dir', at: { step: 'create', when: 'after' }, check: (d) => expect(dirVolumes(d)).toBe(1) },
    { label: 'between create and mount (reference pending)', backend: 'dir', at: { step: 'mount', when: 'before' }, check: (_d, t) => expect(mountedAt(t)).toBe(false) },
    { label: 'inside the create (the image made)', backend: 'loop', at: { step: 'create', when: 'after' }, check: (d) => expect(imageCount(d)).toBe(1) },
    { label: 'between create and mount (attached, reference pending)', backend: 'loop', at: { step: 'attach', when: 'after' }, check: (d) => expect(loopsUnder(images(d))).toHaveLength(1) },
    { label: 'the filesystem mounted, not yet bound (reference pending)', backend: 'loop', at: { step: 'mount', when: 'after' }, check: (d, t) => expect([managedMounted(d), mountedAt(t)]).toEqual([true, false]) },
  ];
  for (const p of publishPoints) {
    it(`${p.backend}: publish killed ${p.label}: the restart removes the volume, kubelet's retry publishes it again`, async () => {
      const env = await start(`csie-kp-${p.backend}`, {}, true);
      const { d, root, holds } = env;
      const pod = { uid: 'pod-crash' };
      const volumeId = ephemeralVolumeHandle(pod.uid, 'v');
      const target = env.k.targetPath(pod.uid, 'v');
      const at = holds!.holdAt({ ...p.at, backend: instance(p.backend), name: volumeId });
      const publish = env.k.setUpEphemeral(pod, 'v', ATTRIBUTES[p.backend]).then(() => 'published', (e: { code?: number }) => e.code);
      await reached(at, publish, holds!);
      p.check(d, target);
      await d.kill('SIGKILL');
      expect(await publish).toBe(status.UNAVAILABLE); // not final: kubelet keeps its dirs and retries
      await d.start();
      env.reconnect();
      await expectGone(d, root, volumeId);
      const again = await env.k.setUpEphemeral(pod, 'v', ATTRIBUTES[p.backend]);
      writeFileSync(join(again.target, 'x'), 'y');
      await env.k.tearDown(volumeId, target);
      expect(env.k.log).toEqual([`removed ${target}`]);
      await expectGone(d, root, volumeId);
    });
  }

  const unpublishPoints: Array<Point & { recorded: boolean }> = [
    { label: 'the target unbound, the reference still recorded', backend: 'dir', at: { step: 'unmount', when: 'after' }, recorded: true, check: (_d, t) => expect(mountedAt(t)).toBe(false) },
    { label: 'between unmount and remove (the removal begun)', backend: 'dir', at: { step: 'delete', when: 'before' }, recorded: false, check: (d) => expect(dirVolumes(d)).toBe(1) },
    { label: 'the filesystem unmounted, the reference still recorded', backend: 'loop', at: { step: 'unmount', when: 'after' }, recorded: true, check: (d) => expect(managedMounted(d)).toBe(false) },
    { label: 'detached, the reference still recorded', backend: 'loop', at: { step: 'detach', when: 'after' }, recorded: true, check: (d) => expect(loopsUnder(images(d))).toEqual([]) },
    { label: 'between unmount and remove (the removal begun)', backend: 'loop', at: { step: 'delete', when: 'before' }, recorded: false, check: (d) => expect(imageCount(d)).toBe(1) },
    { label: 'inside the removal (the image gone)', backend: 'loop', at: { step: 'delete', when: 'after' }, recorded: false, check: (d) => expect(imageCount(d)).toBe(0) },
  ];
  for (const p of unpublishPoints) {
    it(`${p.backend}: unpublish killed ${p.label}: the restart converges, kubelet's retry finishes`, async () => {
      const env = await start(`csie-ku-${p.backend}`, {}, true);
      const { d, root, holds } = env;
      const { volumeId, target } = await env.k.setUpEphemeral({ uid: 'pod-crash' }, 'v', ATTRIBUTES[p.backend]);
      writeFileSync(join(target, 'x'), 'y');
      const at = holds!.holdAt({ ...p.at, backend: instance(p.backend), name: volumeId });
      const unpublish = env.c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: target }).then(() => 'done', (e: { code?: number }) => e.code);
      await reached(at, unpublish, holds!);
      p.check(d, target);
      await d.kill('SIGKILL');
      expect(await unpublish).toBe(status.UNAVAILABLE);
      await d.start();
      env.reconnect();
      if (p.recorded) {
        // Re-established: the pod keeps its data until kubelet's retry unpublishes it.
        expect(await d.client.listVolumes()).toMatchObject([{ name: volumeId, status: 'ready', mounts: [{ consumer: `csi:${target}` }] }]);
        expect(readFileSync(join(target, 'x'), 'utf8')).toBe('y');
      } else {
        await expectGone(d, root, volumeId);
      }
      await env.k.tearDown(volumeId, target);
      expect(env.k.log).toEqual([`removed ${target}`]);
      await expectGone(d, root, volumeId);
    });
  }
});
