// The FlexVolume driver as kubelet and kube-controller-manager run it: installed with
// `berth flexvolume install`, exec'd by absolute path with stdin closed and no BERTH_*
// environment (the socket comes from the berth.json written at install), every reply
// parsed from stdout+stderr as exactly one JSON value, against a real daemon and real
// loop volumes.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { statfs, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { goJson, kubeletCall, strictKubeletCall, mountTable } from '../helpers/callers.js';
import { REPO_ROOT, runBerth, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const NODE = 'test-node'; // the test daemon's nodeId, used as kubelet's node name

async function install(root: TmpRoot, socket: string, extra: string[] = []): Promise<string> {
  const pluginDir = root.path('exec');
  const r = await runBerth(['--socket', socket, 'flexvolume', 'install', '--plugin-dir', pluginDir, ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return join(pluginDir, 'berth~berth', 'berth');
}

/** kubelet's paths for a pod volume and the per-node device mount (flexvolume.md §5). */
function kubeletPaths(root: TmpRoot, pv: string, podUid: string) {
  const dm = root.path('kubelet', 'plugins', 'kubernetes.io', 'flexvolume', 'berth', 'berth', 'mounts', pv);
  const pd = root.path('kubelet', 'pods', podUid, 'volumes', 'berth~berth', pv);
  return { dm, pd };
}

const uniq = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

describe('FlexVolume driver (kubelet-style calls)', () => {
  it('installs atomically as <dir>/berth~berth/berth bound to the admin socket, and upgrades in place', async () => {
    const root = roots.create('flex-install');
    const socket = root.path('admin.sock');
    const exe = await install(root, socket);
    const driverDir = join(root.path('exec'), 'berth~berth');
    expect(readdirSync(driverDir).sort()).toEqual(['berth', 'berth.json']);
    expect(statSync(exe).mode & 0o777).toBe(0o755);
    expect(readFileSync(exe, 'utf8').split('\n')[0]).toBe(`#!${process.execPath}`);
    expect(JSON.parse(readFileSync(join(driverDir, 'berth.json'), 'utf8'))).toEqual({ socket, attach: true, socketAddon: join(REPO_ROOT, 'build', 'Release', 'berth_sock.node') });

    // Upgrade: same names, no dot-named leftovers in the driver dir or the plugin dir.
    const again = await install(root, root.path('other.sock'));
    expect(again).toBe(exe);
    expect(readdirSync(driverDir).sort()).toEqual(['berth', 'berth.json']);
    expect(readdirSync(root.path('exec'))).toEqual(['berth~berth']);
    expect(JSON.parse(readFileSync(join(driverDir, 'berth.json'), 'utf8'))).toEqual({ socket: root.path('other.sock'), attach: true, socketAddon: join(REPO_ROOT, 'build', 'Release', 'berth_sock.node') });

    const init = await kubeletCall(exe, ['init']);
    expect(init.code).toBe(0);
    expect(init.stderr).toBe('');
    expect(init.reply).toEqual({ status: 'Success', capabilities: { attach: true, selinuxRelabel: true, supportsMetrics: true, fsGroup: true, requiresFSResize: true } });

    // A berth.json it cannot use fails every call, naming the file, rather than falling back.
    writeFileSync(join(driverDir, 'berth.json'), '{"socket": ');
    const broken = await kubeletCall(exe, ['init']);
    expect(broken.code).toBe(1);
    expect(broken.reply).toMatchObject({ status: 'Failure', message: expect.stringMatching(/^invalid argument: berth\.json: .*berth flexvolume install/) });

    const un = await runBerth(['flexvolume', 'uninstall', '--plugin-dir', root.path('exec')]);
    expect(un.code).toBe(0);
    expect(existsSync(driverDir)).toBe(false);
  });

  it('runs a full pod lifecycle on a loop volume: attach, waitforattach, mountdevice, mount, unmount, unmountdevice, detach', async () => {
    const root = roots.create('flex-pod');
    const d: TestDaemon = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const pv = uniq('pv-flex');
    const podUid = '6b1e2c3d-0000-4000-8000-123456789abc';
    const { dm, pd } = kubeletPaths(root, pv, podUid);
    const user = { backend: 'loop', size: '64Mi', 'label.note': 'a&b<c>' };
    const J = goJson({ 'kubernetes.io/fsType': 'ext4', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', ...user });
    const call = strictKubeletCall(exe);
    root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));

    // kube-controller-manager
    const attached = await call('attach', J, NODE);
    expect(attached.status).toBe('Success');
    expect(attached.device).toMatch(/^\/dev\/loop\d+$/);
    expect((await call('isattached', J, NODE))).toEqual({ status: 'Success', attached: true });
    // The install's socket addon gone (berth moved): the same answer, through node:net.
    const config = join(root.path('exec'), 'berth~berth', 'berth.json');
    const installed = readFileSync(config, 'utf8');
    writeFileSync(config, JSON.stringify({ ...JSON.parse(installed), socketAddon: root.path('gone', 'berth_sock.node') }));
    expect((await call('isattached', J, NODE))).toEqual({ status: 'Success', attached: true });
    writeFileSync(config, installed);
    const vol = await d.client.inspectVolume(pv);
    expect(vol).toMatchObject({ backend: 'loop', sizeBytes: 64 * 1024 * 1024, fsType: 'ext4', labels: { note: 'a&b<c>', 'flex-pv': pv } });
    expect(vol.attachments).toMatchObject([{ node: NODE, device: attached.device, implicit: false }]);

    // kubelet
    expect(await call('waitforattach', attached.device!, J)).toEqual({ status: 'Success', device: attached.device });
    mkdirSync(dm, { recursive: true, mode: 0o750 });
    expect(await call('mountdevice', dm, attached.device!, J)).toEqual({ status: 'Success' });
    mkdirSync(pd, { recursive: true, mode: 0o750 });
    const JM = goJson({
      'kubernetes.io/fsType': 'ext4', 'kubernetes.io/mounterArgs.FsGroup': '2000', 'kubernetes.io/pod.name': 'web-0',
      'kubernetes.io/pod.namespace': 'default', 'kubernetes.io/pod.uid': podUid, 'kubernetes.io/pvOrVolumeName': pv,
      'kubernetes.io/readwrite': 'rw', 'kubernetes.io/secret/password': 'czNjcjN0', 'kubernetes.io/serviceAccount.name': 'default', ...user,
    });
    expect(await call('mount', pd, JM)).toEqual({ status: 'Success' });
    expect(await call('mount', pd, JM)).toEqual({ status: 'Success' }); // a retry changes nothing

    let mounts = await mountTable();
    expect(mounts.get(dm)).toBe(attached.device);
    expect(mounts.get(pd)).toBe(attached.device);
    writeFileSync(join(pd, 'hello'), 'from the pod');
    expect(readFileSync(join(dm, 'hello'), 'utf8')).toBe('from the pod');
    expect(readdirSync(pd)).toEqual(['hello']); // the data/ subdir: no lost+found
    expect((await d.client.inspectVolume(pv)).mounts.map((m) => m.consumer).sort()).toEqual([`flex-device:${dm}`, `flex:${pd}`]);

    // A second, read-only pod on the same node shares the device mount.
    const { pd: pd2 } = kubeletPaths(root, pv, 'second-pod');
    mkdirSync(pd2, { recursive: true });
    expect(await call('mount', pd2, goJson({ ...JSON.parse(JM), 'kubernetes.io/readwrite': 'ro', 'kubernetes.io/pod.uid': 'second-pod' }))).toEqual({ status: 'Success' });
    expect(readFileSync(join(pd2, 'hello'), 'utf8')).toBe('from the pod');
    expect(() => writeFileSync(join(pd2, 'nope'), 'x')).toThrow(/EROFS/);
    expect(await call('unmount', pd2)).toEqual({ status: 'Success' });

    // Teardown, in kubelet's order.
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    mounts = await mountTable();
    expect(mounts.has(pd)).toBe(false);
    expect(mounts.get(dm)).toBe(attached.device);
    expect(await call('unmount', pd)).toMatchObject({ status: 'Success' }); // retried after a crash: still fine
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect((await mountTable()).has(dm)).toBe(false);
    expect(await call('detach', pv, NODE)).toEqual({ status: 'Success' });
    expect(await call('isattached', J, NODE)).toEqual({ status: 'Success', attached: false });
    const after = await d.client.inspectVolume(pv);
    expect(after.mounts).toEqual([]);
    expect(after.attachments).toEqual([]);

    // The data survives: the next pod sees it.
    expect(await call('mount', pd, JM)).toEqual({ status: 'Success' });
    expect(readFileSync(join(pd, 'hello'), 'utf8')).toBe('from the pod');
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect((await d.client.inspectVolume(pv)).mounts).toEqual([]);
  });

  it('serves an inline pod volume on the dir backend (nothing to attach) under its volumeName', async () => {
    const root = roots.create('flex-inline');
    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const volName = uniq('scratch-shared');
    root.defer(() => d.client.removeVolume(volName, { force: true }).catch(() => undefined));
    // Inline volume: pvOrVolumeName is the pod's volume name, the user option names the berth volume.
    const J = goJson({ 'kubernetes.io/fsType': '', 'kubernetes.io/pvOrVolumeName': 'scratch', 'kubernetes.io/readwrite': 'rw', backend: 'local', volumeName: volName });
    const { dm, pd } = kubeletPaths(root, 'scratch', 'pod-inline');
    const attach = await kubeletCall(exe, ['attach', J, NODE]);
    expect(attach.reply).toEqual({ status: 'Success' }); // no device for a dir volume
    expect((await kubeletCall(exe, ['waitforattach', '', J])).reply).toEqual({ status: 'Success', device: '' });
    mkdirSync(dm, { recursive: true });
    expect((await kubeletCall(exe, ['mountdevice', dm, '', J])).reply).toMatchObject({ status: 'Success' });
    mkdirSync(pd, { recursive: true });
    expect((await kubeletCall(exe, ['mount', pd, J])).reply).toEqual({ status: 'Success' });
    writeFileSync(join(pd, 'log'), 'x');
    // A dir volume gets no device mount (kubelet could not see it: flexvolume-kubelet.test.ts).
    expect(readdirSync(dm)).toEqual([]);
    expect(readFileSync(join((await d.client.inspectVolume(volName)).path!, 'log'), 'utf8')).toBe('x');
    expect((await d.client.inspectVolume(volName)).backend).toBe('local');
    expect((await kubeletCall(exe, ['unmount', pd])).reply).toEqual({ status: 'Success' });
    expect((await kubeletCall(exe, ['unmountdevice', dm])).reply).toEqual({ status: 'Success', message: 'not mounted' });
    // detach gets only the pod volume name: the driver finds the volume by its flex-pv label.
    expect((await kubeletCall(exe, ['detach', 'scratch', NODE])).reply).toEqual({ status: 'Success' });
    const after = await d.client.inspectVolume(volName);
    expect(after.mounts).toEqual([]);
    expect(after.attachments).toEqual([]);
  });

  it('with the controller-manager on another host: its attach/detach touch nothing, the node attaches implicitly and releases with the last unmount', async () => {
    const root = roots.create('flex-remote-kcm');
    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const pv = uniq('pv-remote');
    root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
    const J = goJson({ 'kubernetes.io/fsType': 'ext4', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', backend: 'loop', size: '64Mi' });
    const { dm, pd } = kubeletPaths(root, pv, 'pod-remote');

    // KCM on "master-1" (not this daemon's node): nothing happens here, nothing is created.
    expect((await kubeletCall(exe, ['attach', J, 'master-1'])).reply).toMatchObject({ status: 'Success' });
    await expect(d.client.inspectVolume(pv)).rejects.toMatchObject({ kind: 'NotFound' });
    expect((await kubeletCall(exe, ['isattached', J, 'master-1'])).reply).toEqual({ status: 'Success', attached: true });

    // kubelet on this node: attach returned no device, so devicePath is "".
    expect((await kubeletCall(exe, ['waitforattach', '', J])).reply).toEqual({ status: 'Success', device: '' });
    mkdirSync(dm, { recursive: true });
    expect((await kubeletCall(exe, ['mountdevice', dm, '', J])).reply).toEqual({ status: 'Success' });
    mkdirSync(pd, { recursive: true });
    expect((await kubeletCall(exe, ['mount', pd, J])).reply).toEqual({ status: 'Success' });
    const mounted = await d.client.inspectVolume(pv);
    expect(mounted.attachments).toMatchObject([{ node: NODE, implicit: true, device: expect.stringMatching(/^\/dev\/loop\d+$/) }]);
    expect((await mountTable()).get(pd)).toBe(mounted.attachments[0]!.device);

    expect((await kubeletCall(exe, ['unmount', pd])).reply).toEqual({ status: 'Success' });
    expect((await kubeletCall(exe, ['unmountdevice', dm])).reply).toEqual({ status: 'Success' });
    expect((await kubeletCall(exe, ['detach', pv, 'master-1'])).reply).toMatchObject({ status: 'Success' });
    const after = await d.client.inspectVolume(pv);
    expect(after.mounts).toEqual([]);
    expect(after.attachments).toEqual([]); // the implicit attachment went with the last unmount
  });

  it('installed --no-attach: init reports a mount-only driver and mount/unmount alone serve a loop volume', async () => {
    const root = roots.create('flex-mount-only');
    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket, ['--no-attach']);
    expect((await kubeletCall(exe, ['init'])).reply.capabilities).toMatchObject({ attach: false, fsGroup: true });
    const pv = uniq('pv-mo');
    root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
    const { pd } = kubeletPaths(root, pv, 'pod-mo');
    mkdirSync(pd, { recursive: true });
    const JM = goJson({ 'kubernetes.io/fsType': 'xfs', 'kubernetes.io/pod.name': 'p', 'kubernetes.io/pod.namespace': 'default', 'kubernetes.io/pod.uid': 'pod-mo', 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', 'kubernetes.io/serviceAccount.name': '', backend: 'loop', size: '320Mi' });
    expect((await kubeletCall(exe, ['mount', pd, JM])).reply).toEqual({ status: 'Success' });
    expect(await d.client.inspectVolume(pv)).toMatchObject({ fsType: 'xfs', sizeBytes: 320 * 1024 * 1024 });
    writeFileSync(join(pd, 'x'), 'y');
    expect((await kubeletCall(exe, ['unmount', pd])).reply).toEqual({ status: 'Success' });
    expect((await mountTable()).has(pd)).toBe(false);
    expect((await d.client.inspectVolume(pv)).attachments).toEqual([]);
  });

  /**
   * kubelet's steps for one pod on a loop volume, up to a running pod: attach, waitforattach,
   * mountdevice, mount. Returns the call helper and the two mount points.
   */
  async function runningPod(label: string, fs: 'ext4' | 'xfs', size: string) {
    const root = roots.create(label);
    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const pv = uniq(`pv-${fs}`);
    const { dm, pd } = kubeletPaths(root, pv, `${label}-pod`);
    const J = goJson({ 'kubernetes.io/fsType': fs, 'kubernetes.io/pvOrVolumeName': pv, 'kubernetes.io/readwrite': 'rw', backend: 'loop', size });
    const call = strictKubeletCall(exe);
    root.defer(() => d.client.removeVolume(pv, { force: true }).catch(() => undefined));
    const device = (await call('attach', J, NODE)).device!;
    expect(await call('waitforattach', device, J)).toMatchObject({ status: 'Success' });
    mkdirSync(dm, { recursive: true });
    mkdirSync(pd, { recursive: true });
    expect(await call('mountdevice', dm, device, J)).toEqual({ status: 'Success' });
    expect(await call('mount', pd, J)).toEqual({ status: 'Success' });
    return { d, J, call, pv, dm, pd, device };
  }

  /** What df in the pod shows: the filesystem's size as statfs reports it. */
  const dfBytes = async (dir: string) => {
    const s = await statfs(dir);
    return s.blocks * s.bsize;
  };

  it('xfs grows while the pod has it mounted: expandvolume grows volume and filesystem, expandfs confirms, df shows it without a remount', async () => {
    const MiB = 1024 * 1024;
    const { d, J, call, pv, dm, pd, device } = await runningPod('flex-grow-xfs', 'xfs', '300Mi');
    writeFileSync(join(pd, 'before'), 'kept');
    const before = await dfBytes(pd);
    expect(before).toBeLessThan(300 * MiB);
    // KCM passes the relative device mount path and decimal byte counts (flexvolume.md §5).
    expect(await call('expandvolume', J, `berth/berth/mounts/${pv}`, String(400 * MiB), String(300 * MiB))).toEqual({ status: 'Success' });
    expect((await d.client.inspectVolume(pv)).sizeBytes).toBe(400 * MiB);
    const after = await dfBytes(pd);
    expect(after).toBeGreaterThan(before + 90 * MiB);
    expect((await mountTable()).get(pd)).toBe(device); // the same mount, not a new one
    // kubelet's node step (requiresFSResize) finds the filesystem grown.
    expect(await call('expandfs', J, device, dm, String(400 * MiB), String(300 * MiB))).toEqual({ status: 'Success' });
    writeFileSync(join(pd, 'after'), Buffer.alloc(150 * MiB)); // more than the old filesystem could hold next to its log
    expect(readFileSync(join(pd, 'before'), 'utf8')).toBe('kept');
    await unlink(join(pd, 'after'));
    // A repeated expandvolume (KCM retries) changes nothing.
    expect(await call('expandvolume', J, `berth/berth/mounts/${pv}`, String(400 * MiB), String(300 * MiB))).toMatchObject({ status: 'Success' });
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect(await call('detach', pv, NODE)).toEqual({ status: 'Success' });
  });

  it('ext4 cannot grow mounted here: expandfs fails honestly until the next mountdevice grows it', async () => {
    const MiB = 1024 * 1024;
    const { d, J, call, pv, dm, pd, device } = await runningPod('flex-grow-ext4', 'ext4', '64Mi');
    writeFileSync(join(pd, 'before'), 'kept');
    const before = await dfBytes(pd);
    expect(await call('expandvolume', J, `berth/berth/mounts/${pv}`, String(128 * MiB), String(64 * MiB))).toEqual({ status: 'Success' });
    expect((await d.client.inspectVolume(pv)).sizeBytes).toBe(128 * MiB);
    expect(await dfBytes(pd)).toBe(before); // still the old filesystem while mounted
    const pending = await call('expandfs', J, device, dm, String(128 * MiB), String(64 * MiB));
    expect(pending.status).toBe('Failure');
    expect(pending.message).toMatch(/ext4 filesystem of .* cannot grow while mounted; it grows to 134217728 bytes at its next mount/);

    // The pod restarts: kubelet unmounts, unmountdevice, then mountdevice again (no detach on the same node).
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect(await call('mountdevice', dm, device, J)).toEqual({ status: 'Success' });
    expect(await call('mount', pd, J)).toEqual({ status: 'Success' });
    expect(await dfBytes(pd)).toBeGreaterThan(before + 50 * MiB);
    expect(readFileSync(join(pd, 'before'), 'utf8')).toBe('kept');
    expect(await call('expandfs', J, device, dm, String(128 * MiB), String(64 * MiB))).toEqual({ status: 'Success' });
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect(await call('detach', pv, NODE)).toEqual({ status: 'Success' });
  });

  it('a small ext4 growth (+6%) while mounted: expandfs keeps failing until the next mountdevice, as the daemon measures it', async () => {
    const MiB = 1024 * 1024;
    const { d, J, call, pv, dm, pd, device } = await runningPod('flex-grow-ext4-small', 'ext4', '512Mi');
    const before = await dfBytes(pd);
    // statfs already shows more than 85% of the new size: the old ratio rule answered Success here.
    expect(before).toBeGreaterThan(0.85 * 544 * MiB);
    expect((await d.client.stats(pv)).fsGrowthPending).toBe(false);
    // kubelet's node step alone: expandfs grows the volume itself when the controller has not.
    const first = await call('expandfs', J, device, dm, String(544 * MiB), String(512 * MiB));
    expect(first).toMatchObject({ status: 'Failure', message: expect.stringMatching(/ext4 filesystem of .* cannot grow while mounted; it grows to 570425344 bytes at its next mount/) });
    expect((await d.client.inspectVolume(pv)).sizeBytes).toBe(544 * MiB);
    expect(await d.client.stats(pv)).toMatchObject({ fsGrowthPending: true, totalBytes: before });
    // kubelet retries: the volume has its size now, the filesystem still has not.
    expect(await call('expandfs', J, device, dm, String(544 * MiB), String(512 * MiB))).toMatchObject({ status: 'Failure' });

    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect(await call('mountdevice', dm, device, J)).toEqual({ status: 'Success' });
    expect(await call('mount', pd, J)).toEqual({ status: 'Success' });
    expect((await d.client.stats(pv)).fsGrowthPending).toBe(false);
    expect(await dfBytes(pd)).toBeGreaterThan(before + 24 * MiB);
    expect(await call('expandfs', J, device, dm, String(544 * MiB), String(512 * MiB))).toEqual({ status: 'Success' });
    expect(await call('unmount', pd)).toEqual({ status: 'Success' });
    expect(await call('unmountdevice', dm)).toEqual({ status: 'Success' });
    expect(await call('detach', pv, NODE)).toEqual({ status: 'Success' });
  });

  it('answers every failure as one Failure JSON with exit 1 and nothing on stderr', async () => {
    const root = roots.create('flex-errors');
    // No daemon on this socket at all.
    const deadSocket = root.path('nobody-home.sock');
    const dead = await install(root, deadSocket);
    for (const args of [['attach', '{"kubernetes.io/pvOrVolumeName":"pv1"}', NODE], ['unmount', '/var/lib/kubelet/pods/x/volumes/berth~berth/pv1'], ['detach', 'pv1', NODE]]) {
      const r = await kubeletCall(dead, args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(1);
      expect(r.reply.status).toBe('Failure');
      expect(r.reply.message).toContain(`berth daemon not reachable at ${deadSocket}`);
    }
    expect((await kubeletCall(dead, ['init'])).reply.status).toBe('Success'); // init never needs the daemon

    const d = await startTestDaemon(root);
    const exe = await install(root, d.socket);
    const expectFailure = async (args: string[], message: RegExp) => {
      const r = await kubeletCall(exe, args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(1);
      expect(r.reply.status).toBe('Failure');
      expect(r.reply.message).toMatch(message);
    };
    await expectFailure(['mount', root.path('pd'), '{"kubernetes.io/pvOrVolumeName": '], /mount options JSON: not valid JSON/);
    await expectFailure(['mount', root.path('pd')], /usage: mount <mount dir> <json>/);
    await expectFailure(['mount', root.path('pd'), goJson({ 'kubernetes.io/pvOrVolumeName': uniq('absent'), create: 'false' })], /^not found: volume "absent-[0-9a-f]+" does not exist and the create option is false$/);
    await expectFailure(['attach', goJson({ 'kubernetes.io/pvOrVolumeName': uniq('bad'), bogus: '1' }), NODE], /opts\.bogus/);
    await expectFailure(['attach', goJson({ 'kubernetes.io/pvOrVolumeName': uniq('bad'), size: 'lots' }), NODE], /size/);

    const nsup = await kubeletCall(exe, ['getvolumename', goJson({ 'kubernetes.io/pvOrVolumeName': 'pv1' })]);
    expect(nsup.reply).toEqual({ status: 'Not supported' });
    expect(nsup.code).toBe(0);
    expect((await kubeletCall(exe, ['waitfordetach', '/dev/loop0'])).reply).toEqual({ status: 'Not supported' });
    // Teardown calls for things that were never set up succeed (kubelet retries them).
    expect((await kubeletCall(exe, ['unmountdevice', root.path('never-mounted')])).reply.status).toBe('Success');
    expect((await kubeletCall(exe, ['detach', uniq('never-attached'), NODE])).reply.status).toBe('Success');
    expect((await kubeletCall(exe, ['isattached', goJson({ 'kubernetes.io/pvOrVolumeName': uniq('nope') }), NODE])).reply).toEqual({ status: 'Success', attached: false });
  });
});
