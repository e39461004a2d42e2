// The space reserve on a real full filesystem (a small tmpfs under the test's root): a
// record after a side effect still fits, an operation that takes resources is refused
// before it starts, and the reserve comes back once space does.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fillFilesystem } from '../../test/helpers/full-disk.js';
import { useTmpRoots } from '../../test/helpers/tmp-root.js';
import { openStore } from './sqlite.js';
import type { VolumeRow } from './store.js';

const roots = useTmpRoots();

const vol = (i: number): VolumeRow => ({
  id: `vol-${i}`, name: `v${i}`, backend: 'local', sizeBytes: 0, fsType: null, volumeMode: 'filesystem', accessMode: 'ReadWriteOnce',
  // A big label so that every insert needs new pages.
  labels: { blob: 'x'.repeat(3000) }, options: {}, sourceKind: null, sourceId: null, status: 'ready', createdAt: 't', node: null,
});

describe('space reserve (real full tmpfs)', () => {
  it('pays for the writes that follow a full disk once, refuses new work, and is made again when space returns', () => {
    const root = roots.create('reserve');
    const fsDir = root.path('fs');
    mkdirSync(fsDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'berth-reserve-test', fsDir]);
    const db = `${fsDir}/state.db`;
    const store = openStore(db);
    root.defer(() => store.close());
    store.insertVolume(vol(0));
    expect(existsSync(`${db}.reserve`)).toBe(true);
    store.ensureHeadroom();

    fillFilesystem(`${fsDir}/filler`);
    // New work is refused before it starts: nothing may happen that could not be recorded.
    expect(() => store.ensureHeadroom()).toThrow(expect.objectContaining({
      kind: 'ResourceExhausted', message: expect.stringContaining(`the filesystem holding the state root ${fsDir} is full`),
    }));
    // A record that must be written (after a side effect) uses the reserve.
    let i = 1;
    for (; i < 1000 && existsSync(`${db}.reserve`); i++) store.insertVolume(vol(i));
    expect(existsSync(`${db}.reserve`), 'a write hit the full disk and released the reserve').toBe(false);
    expect(store.getVolume(`vol-${i - 1}`)).not.toBeNull();
    // Once the freed space is used up too, the failure names the database.
    let failure: unknown = null;
    for (; i < 2000 && failure === null; i++) {
      try {
        store.insertVolume(vol(i));
      } catch (err) {
        failure = err;
      }
    }
    expect(failure).toMatchObject({ kind: 'ResourceExhausted', message: expect.stringContaining(`the state database ${db} cannot be written`) });
    expect(store.getVolume(`vol-${i - 1}`), 'the failed write left nothing behind').toBeNull();
    expect(() => store.ensureHeadroom()).toThrow(/is full/);

    rmSync(`${fsDir}/filler`);
    store.ensureHeadroom();
    expect(existsSync(`${db}.reserve`)).toBe(true);
    store.insertVolume(vol(i));
    expect(store.countVolumes()).toBe(i);
  });
});
