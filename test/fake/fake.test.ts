// The fake runs the same conformance suite as the real backends, so unit tests of the core
// and the frontends exercise a backend that behaves like one. Dir-like capabilities only:
// attachable / block / sizeEnforced need real loop devices, which the fake cannot make.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackendConformance } from '../conformance/backend.case.js';
import { createFakeBackend, LOOP_LIKE } from './fake.js';

runBackendConformance({
  name: 'fake (dir-like)',
  makeBackend: async (root, node) => createFakeBackend({ name: 'fake', root: join(root, 'fake'), node }),
});

describe('fake backend hooks', () => {
  it('failNext fails exactly the next call of that method', async () => {
    const b = createFakeBackend({ capabilities: LOOP_LIKE });
    const vol = { id: 'vol-x', name: 'x', sizeBytes: 1, fsType: null, volumeMode: 'filesystem' as const, options: {} };
    b.failNext('create');
    await expect(b.create(vol)).rejects.toMatchObject({ kind: 'Internal' });
    await b.create(vol);
    expect(b.callsTo('create')).toEqual(['vol-x', 'vol-x']);
  });

  it('holdNext stops a call until released', async () => {
    const b = createFakeBackend();
    const vol = { id: 'vol-y', name: 'y', sizeBytes: 1, fsType: null, volumeMode: 'filesystem' as const, options: {} };
    const hold = b.holdNext('create');
    let done = false;
    const p = b.create(vol).then(() => (done = true));
    await hold.reached;
    expect(done).toBe(false);
    hold.release();
    await p;
    expect(b.state.volumes.has('vol-y')).toBe(true);
  });

  it('declares only the optional methods its capabilities allow', () => {
    const plain = createFakeBackend();
    expect(plain.createSnapshot).toBeUndefined();
    expect(plain.expand).toBeUndefined();
    expect(plain.attach).toBeUndefined();
    const loopish = createFakeBackend({ capabilities: LOOP_LIKE });
    expect(typeof loopish.createSnapshot).toBe('function');
    expect(typeof loopish.createFromVolume).toBe('function');
    expect(typeof loopish.expand).toBe('function');
    expect(typeof loopish.attach).toBe('function');
    // What the Backend type says of drivers: block volumes need a device; the fake has no fence.
    expect(() => createFakeBackend({ capabilities: { block: true } })).toThrow(/attachable/);
    expect(() => createFakeBackend({ capabilities: { fencing: true } })).toThrow(/cannot fence/);
  });
});
