// The FlexVolume driver under a model of the real kubelet and controller-manager
// (test/helpers/kubelet-flex.ts): every call is made, skipped or followed by a directory
// removal exactly where kubelet does it, decided with kubelet's own mount-point rule (st_dev
// of the path against its parent's). What a real kubelet v1.26 showed: a dir volume in attach
// mode got a bind mount at the device mount path that looked unmounted to kubelet, so it
// never called unmountdevice, failed forever to remove the busy directory and never detached.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { goJson, strictKubeletCall } from '../helpers/callers.js';
import { runBerth, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { FlexKubelet } from '../helpers/kubelet-flex.js';
import { isLikelyNotMountPoint } from '../helpers/kubelet-mount.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const NODE = 'test-node'; // the test daemon's nodeId, used as kubelet's node name

async function install(root: TmpRoot, socket: string, extra: string[] = []): Promise<string> {
  const r = await runBerth(['--socket', socket, 'flexvolume', 'install', '--plugin-dir', root.path('exec'), ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return join(root.path('exec'), 'berth~berth', 'berth');
}

/** kubelet's paths (flexvolume.md §5), under the test root: the device mount and a pod's volume dir. */
function kubeletPaths(root: TmpRoot, pv: string, podUid: string) {
  return {
    dm: root.path('kubelet', 'plugins', 'kubernetes.io', 'flexvolume', 'berth', 'berth', 'mounts', pv),
    pd: root.path('kubelet', 'pods', podUid, 'volumes', 'berth~berth', pv),
  };
}

const uniq = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

const mountJson = (base: Record<string, string>, podUid: string) => goJson({
  ...base, 'kubernetes.io/pod.name': 'web-0', 'kubernetes.io/pod.namespace': 'default', 'kubernetes.io/pod.uid': podUid,
  'kubernetes.io/serviceAccount.name': 'default',
});

/**
 * One pod's whole life in attach mode, in kubelet's order, with kubelet's decisions; then the
 * volume must be detached and free, and nothing berth made must be left under the root.
 */
async function podLifecycle(d: TestDaemon, k: FlexKubelet, root: TmpRoot, user: Record<string, string>) {
  const pv = uniq('pv');
  root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
  const podUid = uniq('pod');
  const { dm, pd } = kubeletPaths(root, pv, podUid);
  const J = goJson({ 'kubernetes.io/fsType': user.fs ?? '', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', ...user });

  const device = await k.attach(J, NODE);
  expect(await k.isAttached(J, NODE)).toBe(true);
  await k.mountDevice(dm, await k.waitForAttach(device, J), J);
  await k.setUp(pd, mountJson(JSON.parse(J), podUid));
  writeFileSync(join(pd, 'data'), 'from the pod');
  const vol = await d.client.inspectVolume(pv);
  expect(readFileSync(join(vol.path!, 'data'), 'utf8')).toBe('from the pod');

  await k.tearDown(pd);
  await k.unmountDevice(dm);
  expect(existsSync(pd), 'kubelet removed the pod volume dir').toBe(false);
  expect(existsSync(dm), 'kubelet removed the device mount dir').toBe(false);
  await k.detach(pv, NODE);
  expect(await k.isAttached(J, NODE)).toBe(false);
  const after = await d.client.inspectVolume(pv);
  expect(after).toMatchObject({ mounts: [], attachments: [], path: null });
  expect(leftovers(root.dir).mounts.filter((m) => m.startsWith(root.path('kubelet')))).toEqual([]);
  return { pv, dm, pd, J };
}

describe('FlexVolume under kubelet\'s mount-point rule (IsLikelyNotMountPoint)', () => {
  it('a dir volume in attach mode: no device mount kubelet cannot see, the pod mount comes and goes, the controller detaches', async () => {
    const root = roots.create('flexk-dir');
    const d = await startTestDaemon(root);
    const k = new FlexKubelet(strictKubeletCall(await install(root, d.socket)));
    // The state root and kubelet's dir share one filesystem here, as /var/lib/berth and
    // /var/lib/kubelet do on most nodes: a bind of a dir volume keeps its parent's st_dev.
    const { dm } = await podLifecycle(d, k, root, { backend: 'local' });
    // kubelet found nothing mounted at the device mount path and skipped unmountdevice; the
    // directory it then removed held nothing of berth's.
    expect(k.log).toContain(`Path: ${dm} already unmounted`);
    expect(k.log).toContain(`removed ${dm}`);
  });

  it('a loop volume in attach mode: the device mount has a device number of its own, so kubelet calls unmountdevice', async () => {
    const root = roots.create('flexk-loop');
    const d = await startTestDaemon(root);
    const k = new FlexKubelet(strictKubeletCall(await install(root, d.socket)));
    const { dm } = await podLifecycle(d, k, root, { backend: 'loop', size: '64Mi', fs: 'ext4' });
    expect(k.log.some((l) => l.includes('already unmounted'))).toBe(false);
    expect(k.log).toContain(`removed ${dm}`);
  });

  it('every path berth leaves mounted for kubelet looks mounted to it, or kubelet repeating the call changes nothing', async () => {
    const root = roots.create('flexk-rules');
    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const call = strictKubeletCall(exe);
    const k = new FlexKubelet(call);
    for (const [label, user] of [['dir', { backend: 'local' }], ['loop', { backend: 'loop', size: '64Mi', fs: 'ext4' }]] as const) {
      const pv = uniq(`pv-${label}`);
      root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
      const podUid = uniq('pod');
      const { dm, pd } = kubeletPaths(root, pv, podUid);
      const J = goJson({ 'kubernetes.io/fsType': user.fs ?? '', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', ...user });
      const JM = mountJson(JSON.parse(J), podUid);
      const device = await k.attach(J, NODE);
      await k.mountDevice(dm, await k.waitForAttach(device, J), J);
      await k.setUp(pd, JM);
      const vol = await d.client.inspectVolume(pv);
      // A reference berth keeps at a path kubelet tests is one kubelet will release: the
      // device mount only where kubelet sees a mount (it calls unmountdevice only then);
      // pod dirs get unmount whatever they look like.
      for (const m of vol.mounts) {
        if (m.consumer.startsWith('flex-device:')) expect(isLikelyNotMountPoint(m.target!), `${label}: ${m.target} looks mounted`).toBe(false);
      }
      expect(vol.mounts.some((m) => m.consumer === `flex-device:${dm}`), `${label}: device mount reference`).toBe(label === 'loop');
      // A kubelet restart forgets what it did and asks again where the paths look unmounted
      // (for the dir volume: both): the answers are the same and nothing is stacked.
      const again = new FlexKubelet(call);
      await again.mountDevice(dm, device, J);
      await again.setUp(pd, JM);
      expect((await d.client.inspectVolume(pv)).mounts.map((m) => m.consumer).sort()).toEqual(vol.mounts.map((m) => m.consumer).sort());
      expect(again.log).toEqual(label === 'loop' ? [`MountDevice skipped: ${dm} already mounted`, `SetUp skipped: ${pd} already mounted`] : []);
      await again.tearDown(pd);
      await again.unmountDevice(dm);
      await again.detach(pv, NODE);
      expect(await d.client.inspectVolume(pv)).toMatchObject({ mounts: [], attachments: [] });
    }
  });

  it('installed --no-attach: a dir volume is mounted and unmounted by kubelet\'s SetUp and TearDown alone', async () => {
    const root = roots.create('flexk-noattach');
    const d = await startTestDaemon(root);
    const k = new FlexKubelet(strictKubeletCall(await install(root, d.socket, ['--no-attach'])));
    const pv = uniq('pv-na');
    root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
    const { pd } = kubeletPaths(root, pv, 'pod-na');
    await k.setUp(pd, mountJson({ 'kubernetes.io/fsType': '', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw' }, 'pod-na'));
    writeFileSync(join(pd, 'x'), 'y');
    await k.tearDown(pd);
    expect(existsSync(pd)).toBe(false);
    expect(await d.client.inspectVolume(pv)).toMatchObject({ mounts: [], attachments: [] });
  });
});
