// The call logic against an in-memory stand-in for the admin API (the real daemon is in
// test/integration/flexvolume.test.ts): which admin calls each FlexVolume call makes.
import { describe, expect, it } from 'vitest';
import { BerthError } from '../../core/errors.js';
import type { Volume } from '../../core/types.js';
import { ATTACHABLE, MOUNT_ONLY, runFlexCall, type FlexAdmin } from './calls.js';
import { PV_LABEL } from './options.js';

function fakeAdmin(nodeId = 'node-1') {
  const vols = new Map<string, Volume>();
  const log: string[] = [];
  const get = (ref: string) => {
    const v = vols.get(ref) ?? [...vols.values()].find((x) => x.id === ref);
    if (!v) throw new BerthError('NotFound', `volume ${ref} not found`);
    return v;
  };
  const put = (v: Volume) => (vols.set(v.name, v), v);
  const admin: FlexAdmin = {
    inspectVolume: async (ref) => get(ref),
    listVolumes: async (f = {}) =>
      [...vols.values()].filter((v) => Object.entries(f.labels ?? {}).every(([k, val]) => v.labels[k] === val)),
    createVolume: async (b) => {
      log.push(`create ${b.name} ${JSON.stringify(b)}`);
      return put({
        id: `vol-${b.name}`, name: b.name, backend: b.backend ?? 'local', sizeBytes: 0, fsType: (b.fs as Volume['fsType']) ?? null,
        volumeMode: 'filesystem', accessMode: 'ReadWriteOnce', labels: b.labels ?? {}, options: b.options ?? {}, source: null,
        status: 'ready', createdAt: '', attachments: [], mounts: [], node: null, path: null,
      });
    },
    attach: async (ref, b = {}) => {
      log.push(`attach ${ref} ${b.node}`);
      const v = get(ref);
      return put({ ...v, attachments: [...v.attachments.filter((a) => a.node !== b.node), { node: b.node ?? nodeId, device: '/dev/loop9', path: null, readOnly: false, implicit: false, createdAt: '' }] });
    },
    detach: async (ref, b = {}) => {
      log.push(`detach ${ref} ${b.node}`);
      const v = get(ref);
      return put({ ...v, attachments: v.attachments.filter((a) => a.node !== b.node) });
    },
    mount: async (ref, b) => {
      log.push(`mount ${ref} ${b.consumer} ${b.target} ro=${b.readOnly}`);
      const v = get(ref);
      // As the core does: a filesystem other than the caller's is refused before anything is done.
      if (b.fsType !== undefined && v.fsType !== null && v.fsType !== b.fsType) {
        throw new BerthError('InvalidArgument', `fsType: volume ${v.name} has filesystem ${v.fsType}, the request asks for ${b.fsType}`, { field: 'fsType' });
      }
      const nv = put({ ...v, mounts: [...v.mounts, { consumer: b.consumer, frontend: 'flexvolume', target: b.target ?? null, readOnly: !!b.readOnly, createdAt: '' }] });
      return { path: b.target ?? '', volume: nv, existing: false };
    },
    unmount: async (ref, b) => {
      log.push(`unmount ${ref} ${b.consumer}`);
      const v = get(ref);
      return put({ ...v, mounts: v.mounts.filter((m) => m.consumer !== b.consumer) });
    },
    expand: async (ref, size) => {
      log.push(`expand ${ref} ${size}`);
      return { volume: get(ref), pendingFsGrowth: false };
    },
    stats: async () => {
      throw new Error('stats is only asked for mounted volumes, which these tests do not mount');
    },
    version: async () => ({ version: 'test', nodeId }),
  };
  return { admin, log, vols };
}

const J = (o: Record<string, string>) => JSON.stringify({ 'kubernetes.io/fsType': '', 'kubernetes.io/pvOrVolumeName': 'pv1', 'kubernetes.io/readwrite': 'rw', ...o });

describe('FlexVolume calls', () => {
  it('init reports the capabilities without touching the daemon', async () => {
    const reply = await runFlexCall(['init'], () => {
      throw new Error('no daemon for init');
    });
    expect(reply).toEqual({ status: 'Success', capabilities: ATTACHABLE });
    expect(await runFlexCall(['init'], () => fakeAdmin().admin, MOUNT_ONLY)).toEqual({ status: 'Success', capabilities: { ...ATTACHABLE, attach: false } });
  });

  it('controller calls for another node touch nothing; the node attaches implicitly at mountdevice', async () => {
    const { admin, log } = fakeAdmin('node-1');
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    expect(await run(['attach', J({}), 'worker-7'])).toMatchObject({ status: 'Success' });
    expect(await run(['isattached', J({}), 'worker-7'])).toEqual({ status: 'Success', attached: true });
    expect(await run(['detach', 'pv1', 'worker-7'])).toMatchObject({ status: 'Success' });
    expect(log).toEqual([]);
    // On the node: waitforattach only makes sure the volume exists and keeps kubelet's devicePath.
    expect(await run(['waitforattach', '', J({})])).toEqual({ status: 'Success', device: '' });
    expect(log).toEqual([`create pv1 {"name":"pv1","labels":{"${PV_LABEL}":"pv1"}}`]);
  });

  it('walks the attachable lifecycle with flex: / flex-device: consumers', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    expect(await run(['attach', J({ size: '1Gi', backend: 'loop', 'kubernetes.io/fsType': 'ext4' }), 'node-1'])).toEqual({ status: 'Success', device: '/dev/loop9' });
    expect(await run(['isattached', J({}), 'node-1'])).toEqual({ status: 'Success', attached: true });
    expect(await run(['isattached', 'node-1', J({})])).toEqual({ status: 'Success', attached: true }); // old argument order
    expect(await run(['waitforattach', '/dev/loop9', J({})])).toEqual({ status: 'Success', device: '/dev/loop9' });
    expect(await run(['mountdevice', '/dm/pv1', '/dev/loop9', J({})])).toEqual({ status: 'Success' });
    expect(await run(['mount', '/pods/u/pv1', J({ 'kubernetes.io/readwrite': 'ro', 'kubernetes.io/pod.name': 'p' })])).toEqual({ status: 'Success' });
    expect(await run(['unmount', '/pods/u/pv1'])).toEqual({ status: 'Success' });
    expect(await run(['unmount', '/pods/u/pv1'])).toMatchObject({ status: 'Success', message: 'not mounted' });
    expect(await run(['unmountdevice', '/dm/pv1'])).toEqual({ status: 'Success' });
    expect(await run(['detach', 'pv1', 'node-1'])).toEqual({ status: 'Success' });
    expect(await run(['isattached', J({}), 'node-1'])).toEqual({ status: 'Success', attached: false });
    expect(log).toEqual([
      `create pv1 {"name":"pv1","size":"1GiB","backend":"loop","fs":"ext4","labels":{"${PV_LABEL}":"pv1"}}`,
      'attach vol-pv1 node-1',
      'mount vol-pv1 flex-device:/dm/pv1 /dm/pv1 ro=false',
      'mount pv1 flex:/pods/u/pv1 /pods/u/pv1 ro=true',
      'unmount vol-pv1 flex:/pods/u/pv1',
      'unmount vol-pv1 flex-device:/dm/pv1',
      'detach vol-pv1 node-1',
    ]);
  });

  it('mountdevice of a volume without a filesystem of its own (dir) makes no device mount and no reference', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    expect(await run(['attach', J({ backend: 'local' }), 'node-1'])).toEqual({ status: 'Success', device: '/dev/loop9' });
    // kubelet tests the device mount dir with st_dev against its parent: a bind of a directory
    // on its own disk would look unmounted, and unmountdevice would never come.
    expect(await run(['mountdevice', '/dm/pv1', '', J({})])).toMatchObject({ status: 'Success' });
    expect(await run(['mountdevice', '/dm/pv1', '', J({})])).toMatchObject({ status: 'Success' });
    expect(await run(['mount', '/pods/u/pv1', J({})])).toEqual({ status: 'Success' });
    expect(await run(['unmount', '/pods/u/pv1'])).toEqual({ status: 'Success' });
    expect(await run(['unmountdevice', '/dm/pv1'])).toMatchObject({ status: 'Success', message: 'not mounted' });
    expect(await run(['detach', 'pv1', 'node-1'])).toEqual({ status: 'Success' });
    expect(log.filter((l) => !l.startsWith('create '))).toEqual([
      'attach vol-pv1 node-1',
      'mount pv1 flex:/pods/u/pv1 /pods/u/pv1 ro=false',
      'unmount vol-pv1 flex:/pods/u/pv1',
      'detach vol-pv1 node-1',
    ]);
  });

  it('detach finds a volume created under another name through its PV label; absent is success', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    await run(['attach', J({ volumeName: 'data' }), 'node-1']);
    expect(await run(['detach', 'pv1', 'node-1'])).toEqual({ status: 'Success' });
    expect(log).toContain('detach vol-data node-1');
    expect(await run(['detach', 'pv-unknown', 'node-1'])).toMatchObject({ status: 'Success' });
  });

  it('detach of a shared inline volume name detaches only the idle volumes attached to the node', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    await run(['attach', J({ volumeName: 'a', 'kubernetes.io/pvOrVolumeName': 'scratch' }), 'node-1']);
    await run(['attach', J({ volumeName: 'b', 'kubernetes.io/pvOrVolumeName': 'scratch' }), 'node-1']);
    await run(['mount', '/pods/p1/scratch', J({ volumeName: 'a', 'kubernetes.io/pvOrVolumeName': 'scratch' })]);
    expect(await run(['detach', 'scratch', 'node-1'])).toEqual({ status: 'Success' });
    expect(log.filter((l) => l.startsWith('detach'))).toEqual(['detach vol-b node-1']);
  });

  it('mount is one admin call for a volume that exists, and creates a missing one before mounting it', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    expect(await run(['mount', '/pods/n/pv9', J({ 'kubernetes.io/pvOrVolumeName': 'pv9', 'kubernetes.io/fsType': 'xfs', backend: 'loop' })])).toEqual({ status: 'Success' });
    expect(log.map((l) => l.replace(/ \{.*$/, ''))).toEqual([
      'mount pv9 flex:/pods/n/pv9 /pods/n/pv9 ro=false', // NotFound
      'create pv9',
      'mount vol-pv9 flex:/pods/n/pv9 /pods/n/pv9 ro=false',
    ]);
    log.length = 0;
    expect(await run(['mount', '/pods/m/pv9', J({ 'kubernetes.io/pvOrVolumeName': 'pv9', 'kubernetes.io/fsType': 'xfs' })])).toEqual({ status: 'Success' });
    expect(log).toEqual(['mount pv9 flex:/pods/m/pv9 /pods/m/pv9 ro=false']);
  });

  it('refuses a missing volume when create=false, a filesystem mismatch, and bad arguments', async () => {
    const { admin } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    await expect(run(['mount', '/p', J({ create: 'false' })])).rejects.toThrow(/does not exist and the create option is false/);
    await run(['attach', J({ fs: 'xfs' }), 'node-1']);
    await expect(run(['mount', '/p', J({ 'kubernetes.io/fsType': 'ext4' })])).rejects.toThrow(/has filesystem xfs/);
    await expect(run(['mount', '/p', J({ 'kubernetes.io/fsType': 'ext4' })])).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'kubernetes.io/fsType' });
    await expect(run(['mount', '/p'])).rejects.toThrow(/usage: mount <mount dir> <json>/);
    await expect(run(['expandvolume', J({}), 'x', '12abc', '1'])).rejects.toThrow(/newSizeBytes/);
    await expect(run(['expandfs', J({}), '/dev/loop9', '/dm', 'big', '1'])).rejects.toThrow(/newSizeBytes/);
    await expect(run(['expandfs', J({}), '/dev/loop9'])).rejects.toThrow(/usage: expandfs/);
  });

  it('expandfs grows a volume the controller has not grown yet; an unmounted one has nothing to check', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    await run(['attach', J({}), 'node-1']);
    expect(await run(['expandfs', J({}), '/dev/loop9', '/dm', '4096', '0'])).toEqual({ status: 'Success' });
    expect(log.filter((l) => l.startsWith('expand'))).toEqual(['expand vol-pv1 4096']);
  });

  it('refuses a mount dir that is relative, climbs with "..", or holds NUL, before any admin call', async () => {
    const { admin, log } = fakeAdmin();
    const run = (argv: string[]) => runFlexCall(argv, () => admin);
    const field = (p: Promise<unknown>) => p.then(() => null, (e: BerthError) => `${e.kind} ${e.field}`);
    expect(await field(run(['mount', 'pods/u/pv1', J({})]))).toBe('InvalidArgument mount dir');
    expect(await field(run(['mount', '/pods/../etc', J({})]))).toBe('InvalidArgument mount dir');
    expect(await field(run(['unmount', '/pods/u\0x']))).toBe('InvalidArgument mount dir');
    expect(await field(run(['mountdevice', '../dm', '/dev/loop9', J({})]))).toBe('InvalidArgument device mount dir');
    expect(await field(run(['unmountdevice', '/dm/../..']))).toBe('InvalidArgument device mount dir');
    expect(log).toEqual([]);
  });

  it('answers Not supported where kubelet has the right fallback', async () => {
    const { admin } = fakeAdmin();
    expect(await runFlexCall(['getvolumename', J({})], () => admin)).toEqual({ status: 'Not supported' });
    expect(await runFlexCall(['waitfordetach', '/dev/x'], () => admin)).toEqual({ status: 'Not supported' });
  });

  it('names the directory argument when the daemon refuses the target (mount dir / device mount dir)', async () => {
    const { admin } = fakeAdmin();
    admin.mount = async () => {
      throw new BerthError('InvalidArgument', 'target: "/pods/x" is a symbolic link (...)', { field: 'target' });
    };
    await expect(runFlexCall(['mount', '/pods/x', J({})], () => admin)).rejects.toMatchObject({
      kind: 'InvalidArgument', field: 'mount dir', message: 'mount dir: "/pods/x" is a symbolic link (...)',
    });
    await expect(runFlexCall(['mountdevice', '/dm/x', '/dev/loop9', J({ 'kubernetes.io/fsType': 'ext4', 'kubernetes.io/pvOrVolumeName': 'pv-loop' })], () => admin)).rejects.toMatchObject({ field: 'device mount dir' });
    const second = fakeAdmin();
    await runFlexCall(['mount', '/pods/y', J({})], () => second.admin);
    second.admin.unmount = async () => {
      throw new BerthError('FailedPrecondition', 'target: "/pods/y" is covered by a mount berth did not make', { field: 'target' });
    };
    await expect(runFlexCall(['unmount', '/pods/y'], () => second.admin)).rejects.toMatchObject({ kind: 'FailedPrecondition', field: 'mount dir' });
  });
});
