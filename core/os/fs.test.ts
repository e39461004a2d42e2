import { describe, expect, it } from 'vitest';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createExec } from './exec.js';
import { FS_MIN_BYTES, growCommands, growFilesystem, makeFilesystem, measureFsGrowth, mkfsCommand, parseBlkidExport, parseExt4Superblock, probeFilesystem, readFsSize, readFsMagic, detectFsMagic } from './fs.js';

describe('filesystem commands as data', () => {
  it('makes ext4 fast and without root-reserved blocks, xfs/btrfs forced', () => {
    expect(mkfsCommand('ext4', '/dev/loop1').args).toEqual(['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', '--', '/dev/loop1']);
    expect(mkfsCommand('xfs', '/dev/loop1')).toMatchObject({ bin: 'mkfs.xfs', args: ['-q', '-f', '--', '/dev/loop1'] });
    expect(mkfsCommand('btrfs', '/dev/loop1')).toMatchObject({ bin: 'mkfs.btrfs', args: ['-q', '-f', '--', '/dev/loop1'] });
  });
  it('grows ext4 offline on the device and xfs/btrfs through the mount point', () => {
    expect(growCommands('ext4', { device: '/dev/loop1', mountpoint: null }).map((c) => [c.bin, ...c.args])).toEqual([
      ['e2fsck', '-f', '-p', '--', '/dev/loop1'],
      ['resize2fs', '--', '/dev/loop1'],
    ]);
    expect(growCommands('xfs', { device: '/dev/loop1', mountpoint: '/m' })[0]).toMatchObject({ bin: 'xfs_growfs', args: ['--', '/m'] });
    expect(growCommands('btrfs', { device: '/dev/loop1', mountpoint: '/m' })[0]).toMatchObject({ bin: 'btrfs', args: ['filesystem', 'resize', 'max', '/m'] });
    expect(() => growCommands('xfs', { device: '/dev/loop1', mountpoint: null })).toThrow(/only while mounted/);
  });
  it('parses blkid export output', () => {
    expect(parseBlkidExport('DEVNAME=/dev/loop0\nUUID=7693a204\nVERSION=1.0\nBLOCK_SIZE=1024\nTYPE=ext4\nUSAGE=filesystem\n')).toEqual({ type: 'ext4', uuid: '7693a204' });
    expect(parseBlkidExport('DEVNAME=/dev/loop0\nPTTYPE=dos\n')).toBeNull();
    expect(parseBlkidExport('')).toBeNull();
  });
  it('parses ext4 superblocks, including the 64-bit block count', () => {
    const sb = Buffer.alloc(1024);
    sb.writeUInt16LE(0xef53, 0x38);
    sb.writeUInt32LE(2, 0x18); // 4 KiB blocks
    sb.writeUInt32LE(1000, 0x04);
    expect(parseExt4Superblock(sb)).toBe(1000 * 4096);
    sb.writeUInt32LE(0x80, 0x60); // INCOMPAT_64BIT
    sb.writeUInt32LE(1, 0x150);
    expect(parseExt4Superblock(sb)).toBe((2 ** 32 + 1000) * 4096);
    expect(parseExt4Superblock(Buffer.alloc(1024))).toBeNull();
  });
  it('detects only its own filesystems by magic, and nothing in a short or empty head', () => {
    expect(detectFsMagic(Buffer.alloc(70_000))).toBeNull();
    expect(detectFsMagic(Buffer.from('XFSB'))).toBe('xfs');
    const head = Buffer.alloc(70_000);
    head.write('_BHRfS_M', 65_536 + 0x40, 'latin1');
    expect(detectFsMagic(head)).toBe('btrfs');
    expect(detectFsMagic(head.subarray(0, 65_000))).toBeNull();
  });
});

describe('filesystem commands on real images', () => {
  it('measured minimums hold: mkfs refuses just below and accepts at the minimum', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-fs-'));
    try {
      const exec = createExec();
      for (const fs of ['xfs', 'btrfs'] as const) {
        const img = join(dir, `${fs}.img`);
        await writeFile(img, '');
        await truncate(img, FS_MIN_BYTES[fs] - 1024 * 1024);
        await expect(makeFilesystem(exec, fs, img)).rejects.toMatchObject({ kind: 'Internal' });
        await truncate(img, FS_MIN_BYTES[fs]);
        await makeFilesystem(exec, fs, img);
        expect((await probeFilesystem(exec, img))?.type).toBe(fs);
        expect(await readFsMagic(img)).toBe(fs);
        expect(await readFsSize(img)).toBe(FS_MIN_BYTES[fs]);
      }
      const img = join(dir, 'ext4.img');
      await writeFile(img, '');
      await truncate(img, FS_MIN_BYTES.ext4);
      expect(await probeFilesystem(exec, img)).toBeNull();
      expect(await readFsMagic(img)).toBeNull();
      await makeFilesystem(exec, 'ext4', img);
      expect(await readFsMagic(img)).toBe('ext4');
      expect(await readFsSize(img)).toBe(FS_MIN_BYTES.ext4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('predicts exactly the size resize2fs gives an ext4, including a last group too small to keep', async () => {
    const MiB = 1024 * 1024;
    const dir = await mkdtemp(join(tmpdir(), 'berth-fs-grow-'));
    try {
      const exec = createExec();
      // [made at, device grown to, size resize2fs gives]: 1 KiB blocks under 512 MiB (8 MiB
      // groups), 4 KiB blocks from 512 MiB (128 MiB groups, whose last one is dropped when a
      // few MiB short of its metadata + 50 blocks: mke2fs drops it the same way).
      const cases: [number, number, number][] = [
        [64 * MiB, 68 * MiB, 68 * MiB],
        [64 * MiB, 128 * MiB, 128 * MiB],
        [512 * MiB, 514 * MiB, 512 * MiB],
        [512 * MiB, 515 * MiB, 515 * MiB],
        [514 * MiB, 520 * MiB, 520 * MiB],
      ];
      for (const [made, grown, expected] of cases) {
        const img = join(dir, `ext4-${made}-${grown}.img`);
        await writeFile(img, '');
        await truncate(img, made);
        await makeFilesystem(exec, 'ext4', img);
        const atMkfs = await measureFsGrowth(img, made, null);
        expect(atMkfs?.grownBytes, `mkfs at ${made}`).toBe(atMkfs?.sizeBytes); // a fresh mkfs has nothing to grow
        await truncate(img, grown);
        const before = await measureFsGrowth(img, grown, null);
        expect(before, `${made} -> ${grown}`).toMatchObject({ fsType: 'ext4', sizeBytes: atMkfs!.sizeBytes, grownBytes: expected });
        await growFilesystem(exec, 'ext4', { device: img, mountpoint: null });
        expect(await readFsSize(img), `${made} -> ${grown}`).toBe(expected);
        const after = await measureFsGrowth(img, grown, null);
        expect(after?.grownBytes).toBe(after?.sizeBytes);
        await rm(img);
      }
      const none = join(dir, 'none.img');
      await writeFile(none, Buffer.alloc(2 * MiB));
      expect(await measureFsGrowth(none, 2 * MiB, null)).toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
