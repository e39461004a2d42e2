// The device read-only flag and FS_IOC_SHUTDOWN on real loop filesystems under a per-test
// root. A refused shutdown is tried only inside the test's own filesystem, so even a broken
// check could never reach a filesystem outside the root.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { leftovers, useTmpRoots, type TmpRoot } from '../../test/helpers/tmp-root.js';
import { blockDeviceReadOnly, clearBlockDeviceReadOnly, setBlockDeviceReadOnly, shutdownFilesystem } from './block.js';
import { createExec } from './exec.js';
import { attachLoop, detachLoop } from './loop.js';
import { findMount, mount, unmountAll } from './mounts.js';

const MKFS: Record<string, { mib: number; args: string[] }> = {
  ext4: { mib: 16, args: ['mkfs.ext4', '-q', '-F'] },
  xfs: { mib: 300, args: ['mkfs.xfs', '-q', '-f'] },
  btrfs: { mib: 128, args: ['mkfs.btrfs', '-q', '-f'] },
};

describe('block devices and fencing', () => {
  const exec = createExec();
  const roots = useTmpRoots();

  /** Makes, attaches and mounts a filesystem under the root; returns the device and mount point. */
  async function mounted(root: TmpRoot, fs: string): Promise<{ device: string; dir: string }> {
    const img = root.path(`${fs}.img`);
    writeFileSync(img, '');
    truncateSync(img, MKFS[fs]!.mib * 2 ** 20);
    const [bin, ...args] = MKFS[fs]!.args;
    execFileSync(bin!, [...args, img]);
    const device = await attachLoop(exec, img);
    const dir = root.path(`mnt-${fs}`);
    mkdirSync(dir);
    await mount(exec, device, dir, { fsType: fs });
    return { device, dir };
  }
  const devOf = (dir: string) => {
    const d = statSync(dir).dev;
    return { major: Math.floor(d / 256) & 0xfff, minor: (d & 0xff) | ((Math.floor(d / 2 ** 12) & 0xfff00)) };
  };

  it('reads, sets and clears a device\'s read-only flag (BLKROGET / BLKROSET)', async () => {
    const root = roots.create('blk-ro');
    const img = root.path('ro.img');
    writeFileSync(img, '');
    truncateSync(img, 4 * 2 ** 20);
    const dev = await attachLoop(exec, img);
    expect(await blockDeviceReadOnly(dev)).toBe(false);
    expect(await clearBlockDeviceReadOnly(dev)).toBe(false);
    await setBlockDeviceReadOnly(dev, true);
    expect(await blockDeviceReadOnly(dev)).toBe(true);
    expect(await clearBlockDeviceReadOnly(dev)).toBe(true);
    expect(await blockDeviceReadOnly(dev)).toBe(false);
    await detachLoop(exec, dev);
    await expect(blockDeviceReadOnly(img)).rejects.toMatchObject({ kind: 'Internal', message: expect.stringContaining(`reading the read-only flag of ${img} failed: not a block device (ENOTBLK`) });
    await expect(blockDeviceReadOnly(root.path('none'))).rejects.toMatchObject({ kind: 'NotFound' });
  });

  for (const fs of ['ext4', 'xfs'] as const) {
    it(`shuts down ${fs} at once (no-flush): writes fail with EIO, unmount and detach still work`, async () => {
      const root = roots.create(`fence-${fs}`);
      const { device, dir } = await mounted(root, fs);
      writeFileSync(`${dir}/before`, 'x');
      await shutdownFilesystem(dir, 'no-flush', { dev: devOf(dir) });
      expect(() => writeFileSync(`${dir}/after`, 'y')).toThrow(/EIO/);
      expect(await findMount(dir)).not.toBeNull();
      await unmountAll(exec, dir);
      await detachLoop(exec, device);
      expect(leftovers(root.dir)).toEqual({ mounts: [], loops: [] });
    });
  }

  it('btrfs without the shutdown ioctl (kernels without CONFIG_BTRFS_EXPERIMENTAL) is Unsupported, and goes on', async () => {
    const root = roots.create('fence-btrfs');
    const { dir } = await mounted(root, 'btrfs');
    await shutdownFilesystem(dir, 'no-flush').then(
      () => expect(() => writeFileSync(`${dir}/after`, 'y')).toThrow(/EIO/), // a kernel that has it
      (err: unknown) => {
        expect(err).toMatchObject({ kind: 'Unsupported', message: `shutting down the filesystem at ${dir} (no-flush) failed: this filesystem has no shutdown ioctl (ENOTTY from FS_IOC_SHUTDOWN)` });
        writeFileSync(`${dir}/still-writable`, 'x');
      },
    );
    await unmountAll(exec, dir);
  });

  it('flush and flush-log modes shut down too', async () => {
    const root = roots.create('fence-modes');
    const { dir } = await mounted(root, 'ext4');
    writeFileSync(`${dir}/kept`, 'x');
    await shutdownFilesystem(dir, 'flush');
    expect(() => writeFileSync(`${dir}/after`, 'y')).toThrow(/EIO/);
    await unmountAll(exec, dir);
    await mount(exec, (await attachLoop(exec, root.path('ext4.img'))), dir, { fsType: 'ext4' });
    await shutdownFilesystem(dir, 'flush-log');
    expect(() => writeFileSync(`${dir}/after`, 'y')).toThrow(/EIO/);
    await unmountAll(exec, dir);
  });

  it('refuses a directory that is not a mount\'s root, and a mount on another device; the filesystem goes on', async () => {
    const root = roots.create('fence-refuse');
    const { dir } = await mounted(root, 'ext4');
    mkdirSync(`${dir}/sub`);
    await expect(shutdownFilesystem(`${dir}/sub`, 'no-flush')).rejects.toMatchObject({
      kind: 'Internal', message: `shutting down the filesystem at ${dir}/sub (no-flush) failed: invalid argument: ${dir}/sub is not the root of a mount (EINVAL from not a mount point)`,
    });
    const real = devOf(dir);
    await expect(shutdownFilesystem(dir, 'no-flush', { dev: { major: real.major, minor: real.minor + 1 } })).rejects.toMatchObject({
      kind: 'FailedPrecondition', message: expect.stringContaining(`is not on device ${real.major}:${real.minor + 1}`),
    });
    writeFileSync(`${dir}/still-writable`, 'x');
    await expect(shutdownFilesystem(dir, 'sideways' as never)).rejects.toMatchObject({ kind: 'InvalidArgument', field: 'how' });
    await unmountAll(exec, dir);
  });
});
