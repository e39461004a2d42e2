// CSI ephemeral inline volumes against a real daemon, driven like kubelet v1.26 drives them
// (test/helpers/kubelet-csi.ts): NodePublish with no staging, volume_id csi-<sha256>, the
// pod volume's attributes plus the pod's identity and csi.storage.k8s.io/ephemeral=true in
// volume_context; NodeUnpublish, then kubelet's removeMountDir. On dir and loop: the volume is
// made at publish and gone after unpublish, bad attributes are named, and a kill -9 at any
// point of either converges at restart (no reference: removed; reference: re-established).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createCsiClient, grpcError, type CsiClient } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CsiKubelet, ephemeralVolumeHandle } from '../helpers/kubelet-csi.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

async function start(label: string, config: Record<string, unknown> = {}) {
  const root = roots.create(label);
  const d = await startTestDaemon(root, { csi: true, config });
  let c = createCsiClient(d.csiEndpoint);
  let k = new CsiKubelet(c, root.path('kubelet'), 'csi.berth.dev');
  root.defer(() => c.close());
  return {
    d, root,
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

/** Kills the daemon (SIGKILL) as soon as `cond` holds while `op` runs, or once op has finished. */
async function killWhen(d: TestDaemon, op: Promise<unknown>, cond: () => boolean): Promise<'mid-operation' | 'after-operation'> {
  let finished = false;
  void op.then(() => (finished = true), () => (finished = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (cond()) {
      await d.kill('SIGKILL');
      return 'mid-operation';
    }
    if (finished || Date.now() > deadline) {
      await d.kill('SIGKILL');
      return 'after-operation';
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

// A kill lands where the daemon waits for the kernel: inside create ('creating', rolled back),
// with a pending reference (dropped, then the unreferenced volume removed), with the reference
// still recorded (re-established until kubelet's retry), inside the removal ('deleting', rolled
// forward). Between a create's commit and its mount's pending row, or an unmount's commit and
// the removal's 'deleting' row, the daemon does no I/O, so no kill lands there; those states
// are written into the store directly in core/ephemeral.test.ts.
describe('CSI ephemeral inline volumes across kill -9', () => {
  const images = (d: TestDaemon) => join(d.stateRoot, 'backends', 'loop');
  const anyImage = (d: TestDaemon) => existsSync(images(d)) && readdirSync(images(d)).some((f) => f.endsWith('.img'));
  const anyDirVolume = (d: TestDaemon) => {
    const dir = join(d.stateRoot, 'backends', 'local');
    return existsSync(dir) && readdirSync(dir).some((f) => f.startsWith('vol-'));
  };
  const managedMounted = (d: TestDaemon) => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${join(d.stateRoot, 'mounts')}/`);

  const publishPoints: Array<[string, 'dir' | 'loop', (d: TestDaemon, target: string) => boolean]> = [
    ['dir: the volume directory exists (inside the create)', 'dir', (d) => anyDirVolume(d)],
    ['dir: the target is bound (a pending reference)', 'dir', (_d, t) => mountedAt(t)],
    ['loop: the image exists (inside the create)', 'loop', (d) => anyImage(d)],
    ['loop: a loop device exists (created, its reference pending)', 'loop', (d) => loopsUnder(images(d)).length > 0],
    ['loop: the filesystem is mounted (a pending reference)', 'loop', (d) => managedMounted(d)],
    ['loop: the target is bound (a pending reference)', 'loop', (_d, t) => mountedAt(t)],
  ];
  for (const [point, backend, cond] of publishPoints) {
    it(`publish killed when ${point}: the restart converges and kubelet's retry publishes`, async () => {
      const env = await start(`csie-kp-${backend}`);
      const { d, root } = env;
      const pod = { uid: 'pod-crash' };
      const volumeId = ephemeralVolumeHandle(pod.uid, 'v');
      const target = env.k.targetPath(pod.uid, 'v');
      const publish = env.k.setUpEphemeral(pod, 'v', ATTRIBUTES[backend]);
      const when = await killWhen(d, publish, () => cond(d, target));
      await publish.catch(() => undefined); // UNAVAILABLE: not final, kubelet keeps its dirs and retries
      await d.start();
      env.reconnect();
      const vols = await d.client.listVolumes();
      // Converged: no volume at all, or the volume with its committed reference and its bind.
      expect(vols.length, when).toBeLessThanOrEqual(1);
      if (vols.length === 1) {
        expect(vols[0]).toMatchObject({ name: volumeId, status: 'ready', mounts: [{ consumer: `csi:${target}` }] });
        expect(mountedAt(target)).toBe(true);
      } else {
        await expectGone(d, root, volumeId);
      }
      const again = await env.k.setUpEphemeral(pod, 'v', ATTRIBUTES[backend]);
      writeFileSync(join(again.target, 'x'), 'y');
      await env.k.tearDown(volumeId, target);
      await expectGone(d, root, volumeId);
    });
  }

  const unpublishPoints: Array<[string, 'dir' | 'loop', (d: TestDaemon, target: string) => boolean]> = [
    ['dir: the target is unbound (the reference still recorded)', 'dir', (_d, t) => !mountedAt(t)],
    ['loop: the target is unbound (the reference still recorded)', 'loop', (_d, t) => !mountedAt(t)],
    ['loop: the filesystem is unmounted (the reference still recorded)', 'loop', (d) => !managedMounted(d)],
    ['loop: the image is gone (inside the removal)', 'loop', (d) => !anyImage(d)],
  ];
  for (const [point, backend, cond] of unpublishPoints) {
    it(`unpublish killed when ${point}: the restart converges and kubelet's retry finishes`, async () => {
      const env = await start(`csie-ku-${backend}`);
      const { d, root } = env;
      const { volumeId, target } = await env.k.setUpEphemeral({ uid: 'pod-crash' }, 'v', ATTRIBUTES[backend]);
      const unpublish = env.c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
      const when = await killWhen(d, unpublish, () => cond(d, target));
      await unpublish.catch(() => undefined);
      await d.start();
      env.reconnect();
      const vols = await d.client.listVolumes();
      if (vols.length === 1) {
        // The reference was still recorded: re-established, until kubelet's retry.
        expect(vols[0], when).toMatchObject({ name: volumeId, status: 'ready', mounts: [{ consumer: `csi:${target}` }] });
        expect(mountedAt(target)).toBe(true);
      } else {
        expect(vols, when).toEqual([]);
        await expectGone(d, root, volumeId);
      }
      await env.k.tearDown(volumeId, target);
      expect(env.k.log).toEqual([`removed ${target}`]);
      await expectGone(d, root, volumeId);
    });
  }
});
