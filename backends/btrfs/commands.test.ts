import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isBtrfs, isSubvolume, ownQgroup, parseQgroupShow } from './commands.js';

// Captured from btrfs-progs 6.2: `btrfs qgroup show --raw -r -e <pool>` after a limit, a
// read-only snapshot (which inherits the limit) and a writable snapshot of it.
const SHOW_ALL = `Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path 
--------    ----------    ---------  --------------  -------------   ---- 
0/5              16384        16384            none           none   <toplevel>
0/256         20955136        16384        20971520           none   volumes/vol-01hzz
0/257         20955136        16384        20971520           none   snapshots/snap 01
1/100                0            0            none       10485760   
`;

// btrfs-progs before 5.x printed no Path column.
const SHOW_OLD = `qgroupid         rfer         excl     max_rfer     max_excl 
--------         ----         ----     --------     -------- 
0/258            16384        16384      1000000         none 
`;

describe('parseQgroupShow', () => {
  it('reads ids, byte counts, limits and paths (with spaces)', () => {
    const rows = parseQgroupShow(SHOW_ALL);
    expect(rows).toHaveLength(4);
    expect(rows[0]).toEqual({
      qgroupId: '0/5', referencedBytes: 16384, exclusiveBytes: 16384,
      maxReferencedBytes: null, maxExclusiveBytes: null, path: '<toplevel>',
    });
    expect(rows[1]).toMatchObject({ qgroupId: '0/256', referencedBytes: 20955136, maxReferencedBytes: 20971520, path: 'volumes/vol-01hzz' });
    expect(rows[2]!.path).toBe('snapshots/snap 01');
    expect(rows[3]).toMatchObject({ qgroupId: '1/100', maxReferencedBytes: null, maxExclusiveBytes: 10485760, path: null });
  });

  it('reads the old layout without a path column', () => {
    expect(parseQgroupShow(SHOW_OLD)).toEqual([{
      qgroupId: '0/258', referencedBytes: 16384, exclusiveBytes: 16384,
      maxReferencedBytes: 1000000, maxExclusiveBytes: null, path: null,
    }]);
  });

  it('ignores headers, human-readable rows and empty text', () => {
    expect(parseQgroupShow('')).toEqual([]);
    expect(parseQgroupShow('0/256  1.00MiB  1.00MiB  none  none  v1\n')).toEqual([]);
  });

  it('ownQgroup picks the level-0 row', () => {
    const rows = parseQgroupShow(SHOW_ALL).slice(1).reverse();
    expect(ownQgroup(rows)?.qgroupId).toBe('0/257');
    expect(ownQgroup([])).toBeNull();
  });
});

describe('filesystem checks without a process', () => {
  it('a plain directory on a non-btrfs filesystem is neither btrfs nor a subvolume; missing paths are false', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-btrfs-unit-'));
    try {
      // The test machine's /tmp is not btrfs; if it ever is, a plain mkdir is still no subvolume.
      expect(await isSubvolume(dir)).toBe(false);
      expect(await isBtrfs(join(dir, 'missing'))).toBe(false);
      expect(await isSubvolume(join(dir, 'missing'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
