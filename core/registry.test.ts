import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fakeDriver } from '../test/fake/fake.js';
import { BerthError } from './errors.js';
import { createSilentLogger } from './log.js';
import { createExec } from './os/exec.js';
import { createBackends } from './registry.js';

const base = { drivers: { fake: fakeDriver }, exec: createExec(), log: createSilentLogger() };

async function errorOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe('createBackends', () => {
  it('builds every configured instance under its name', async () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-reg-'));
    try {
      const m = await createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: root, backends: { a: { driver: 'fake' }, b: { driver: 'fake', capabilities: { block: true, attachable: true } } } } });
      expect([...m.keys()]).toEqual(['a', 'b']);
      expect(m.get('b')?.capabilities.block).toBe(true);
      expect(m.get('a')?.describe()['root']).toBe(join(root, 'backends', 'a'));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses an unknown driver naming backends.<name>.driver and listing the known ones', async () => {
    const err = await errorOf(createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { fast: { driver: 'zfs' } } } }));
    expect(err).toMatchObject({ kind: 'InvalidArgument', field: 'backends.fast.driver' });
    expect(err.message).toContain('fake');
    const typo = await errorOf(createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { fast: { driver: 'fak' } } } }));
    expect(typo.message).toContain('did you mean "fake"?');
  });

  it('refuses a missing driver, a bad instance name and bad driver settings naming them', async () => {
    expect((await errorOf(createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { fast: {} as never } } }))).field).toBe('backends.fast.driver');
    expect((await errorOf(createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { 'a/b': { driver: 'fake' } } } }))).field).toBe('backends.a/b');
    expect((await errorOf(createBackends({ ...base, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { f: { driver: 'fake', colour: 'red' } } } }))).field).toBe('backends.f.colour');
  });

  it('turns a factory crash into Internal naming the instance', async () => {
    const err = await errorOf(createBackends({ ...base, drivers: { boom: () => { throw new Error('no disk'); } }, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { x: { driver: 'boom' } } } }));
    expect(err.kind).toBe('Internal');
    expect(err.message).toContain('"x"');
  });
});
