// The Backend type pairs each optional ability with its capability. These checks are for the
// compiler: `npx tsc --noEmit` fails if an @ts-expect-error below stops being an error, i.e.
// if a backend could declare an ability without its methods, or have them without declaring it.
import { describe, expect, it } from 'vitest';
import { canAttach, canExpand, canFence, canSnapshot, type Backend, type BackendBase } from './backend.js';

const NONE = {
  sizeEnforced: false, block: false, snapshots: false, clones: false, expansion: 'none', fsTypes: [], attachable: false, fencing: false, scope: 'local',
} as const;

const base: Omit<BackendBase, 'capabilities'> = {
  name: 'b', driver: 't', describe: () => ({}), privateDirs: () => [], validateCreate: (s) => s,
  create: async () => undefined, delete: async () => undefined, mount: async () => ({ path: '/x' }), unmount: async () => undefined,
  inspect: async () => ({ exists: false, device: null, mounted: false }), listPresent: async () => [],
  capacity: async () => ({ totalBytes: 0, availableBytes: 0 }),
  stats: async () => ({ totalBytes: 0, usedBytes: 0, availableBytes: 0, totalInodes: null, usedInodes: null, availableInodes: null, abnormal: false, message: '' }),
};
const snapshotMethods = { createSnapshot: async () => undefined, deleteSnapshot: async () => undefined, createFromSnapshot: async () => undefined };
const attachMethods = { attach: async () => ({ device: '/dev/loop0' }), detach: async () => undefined, attachedHere: async () => false };

describe('the Backend type', () => {
  it('accepts a backend whose methods match its capabilities, and the guards narrow to them', () => {
    const plain: Backend = { ...base, capabilities: NONE };
    const snaps: Backend = { ...base, ...snapshotMethods, capabilities: { ...NONE, snapshots: true } };
    const loopish: Backend = { ...base, ...attachMethods, capabilities: { ...NONE, attachable: true, block: true } };
    expect([canSnapshot(plain), canSnapshot(snaps), canAttach(loopish), canExpand(snaps), canFence(loopish)]).toEqual([false, true, true, false, false]);
    if (canSnapshot(snaps)) expect(typeof snaps.createSnapshot).toBe('function'); // callable without `!` or `?.`
  });

  it('refuses an ability declared without its methods, or methods without the ability', () => {
    // @ts-expect-error snapshots declared, createSnapshot/deleteSnapshot/createFromSnapshot missing
    const declaredOnly: Backend = { ...base, capabilities: { ...NONE, snapshots: true } };
    // @ts-expect-error createSnapshot present, snapshots not declared
    const undeclared: Backend = { ...base, ...snapshotMethods, capabilities: NONE };
    // @ts-expect-error expansion 'online' without expand
    const noExpand: Backend = { ...base, capabilities: { ...NONE, expansion: 'online' } };
    // @ts-expect-error fence without the fencing capability
    const fenceOnly: Backend = { ...base, fence: async () => true, capabilities: NONE };
    // @ts-expect-error block volumes without a device to attach
    const blockNoDevice: Backend = { ...base, capabilities: { ...NONE, block: true } };
    expect([declaredOnly, undeclared, noExpand, fenceOnly, blockNoDevice]).toHaveLength(5);
  });
});
