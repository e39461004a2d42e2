// The state root claim on a real full filesystem (a small tmpfs): it writes nothing it needs,
// so a daemon starts and reads its records with not one byte free, and leaves no partial
// pid file behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createSilentLogger } from '../core/index.js';
import { fillFilesystem } from '../test/helpers/full-disk.js';
import { useTmpRoots } from '../test/helpers/tmp-root.js';
import { claimStateRoot } from './state-root.js';

const roots = useTmpRoots();

const vol = {
  id: 'vol-00000000000000000000000001', name: 'kept', backend: 'local', sizeBytes: 0, fsType: null, volumeMode: 'filesystem' as const,
  accessMode: 'ReadWriteOnce' as const, labels: {}, options: {}, sourceKind: null, sourceId: null, status: 'ready' as const, createdAt: 't', node: null,
};

describe('state root claim', () => {
  it('opens the state and serves reads on a full filesystem, writing no pid file and leaving no partial one', async () => {
    const root = roots.create('claim-full');
    const fs = root.path('fs');
    mkdirSync(fs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'berth-claim-test', fs]);
    const state = `${fs}/state`;
    const log = createSilentLogger();

    const first = await claimStateRoot(state, log);
    first.store.insertVolume(vol);
    expect(readFileSync(`${state}/daemon.pid`, 'utf8')).toBe(`${process.pid}\n`);
    fillFilesystem(`${fs}/filler`);
    // Closed on the full disk, the WAL cannot be checkpointed away: as after a kill -9, the
    // pid file and the WAL are left.
    first.store.close();
    expect(existsSync(`${state}/state.db-wal`)).toBe(true);
    writeFileSync(`${state}/daemon.pid.4242`, ''); // an older berth's partial pid file (an inode, no block)
    expect(statfsSync(fs).bavail).toBe(0);
    const second = await claimStateRoot(state, log);
    root.defer(() => second.store.close());
    expect(second.store.getVolumeByName('kept')?.id).toBe(vol.id);
    expect(readdirSync(state).filter((n) => n.startsWith('daemon.pid'))).toEqual([]);
    expect(existsSync(`${state}/state.db-shm`)).toBe(false);
    expect(() => second.store.ensureHeadroom()).toThrow(/is full/);

    rmSync(`${fs}/filler`);
    second.store.ensureHeadroom();
    await second.releasePidFile(); // never written: nothing to remove, nothing thrown
  });
});
