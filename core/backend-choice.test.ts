import { describe, expect, it } from 'vitest';
import { createFakeBackend } from '../test/fake/fake.js';
import type { Backend } from './backend.js';
import { chooseBackend } from './backend-choice.js';

const dir = createFakeBackend({ name: 'local' });
const loop = createFakeBackend({ name: 'loop', capabilities: { fsTypes: ['ext4', 'xfs', 'btrfs'], block: true, attachable: true } });
const pool = createFakeBackend({ name: 'pool', capabilities: { snapshots: true } });
const all = new Map<string, Backend>([['local', dir], ['loop', loop], ['pool', pool]]);

describe('chooseBackend', () => {
  it('uses the default backend when it can serve the request', () => {
    expect(chooseBackend(all, 'local', {}).name).toBe('local');
  });

  it('routes a filesystem or block request the default cannot serve to the first backend that can', () => {
    expect(chooseBackend(all, 'local', { fsType: 'xfs' }).name).toBe('loop');
    expect(chooseBackend(all, 'local', { volumeMode: 'block' }).name).toBe('loop');
  });

  it('prefers explicit, then existing, then source backends over capability routing', () => {
    expect(chooseBackend(all, 'local', { explicit: 'pool', fsType: 'xfs' }).name).toBe('pool');
    expect(chooseBackend(all, 'local', { existing: 'pool' }).name).toBe('pool');
    expect(chooseBackend(all, 'local', { source: 'pool', fsType: 'xfs' }).name).toBe('pool');
  });

  it('falls back to the default when nothing can serve, so its validation names the field', () => {
    const onlyDir = new Map<string, Backend>([['local', dir]]);
    expect(chooseBackend(onlyDir, 'local', { fsType: 'xfs' }).name).toBe('local');
  });

  it('names the backend field for an unknown explicit backend', () => {
    expect(() => chooseBackend(all, 'local', { explicit: 'nope' })).toThrow(/backend: unknown backend "nope"/);
  });
});
