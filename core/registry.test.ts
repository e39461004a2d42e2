import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fakeDriver } from '../test/fake/fake.js';
import { BerthError } from './errors.js';
import { createSilentLogger } from './log.js';
import type { BackendDriver } from './backend.js';
import { createExec, type Exec } from './os/exec.js';
import { createBackends } from './registry.js';

const base = { drivers: { fake: fakeDriver }, exec: createExec(), log: createSilentLogger() };

async function errorOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe('createBackends', () => {
  it('hands each backend its node and an exec limited to the programs its driver declares', async () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-reg-'));
    try {
      const got: { exec?: Exec; node?: string } = {};
      const spy: BackendDriver = { binaries: ['sync'], create: (ctx) => ((got.exec = ctx.exec), (got.node = ctx.node), fakeDriver.create(ctx)) };
      await createBackends({ ...base, drivers: { spy }, config: { nodeId: 'node-7', stateRoot: root, backends: { s: { driver: 'spy' } } } });
      expect(got.node).toBe('node-7');
      await expect(got.exec!({ bin: 'sync', args: [], timeoutMs: 10_000 })).resolves.toMatchObject({ exitCode: 0 });
      await expect(got.exec!({ bin: 'cp', args: ['--', '/dev/null', join(root, 'x')], timeoutMs: 10_000 })).rejects.toThrow(/spy driver does not declare cp/);
      // A program core/os/exec.ts does not allow is a driver bug, found at start-up.
      const rogue: BackendDriver = { binaries: ['rm'], create: fakeDriver.create };
      const err = await errorOf(createBackends({ ...base, drivers: { rogue }, config: { nodeId: 'n', stateRoot: root, backends: { r: { driver: 'rogue' } } } }));
      expect(err.kind).toBe('Internal');
      expect(err.message).toMatch(/declares rm/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

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
    const err = await errorOf(createBackends({ ...base, drivers: { boom: { binaries: [], create: () => { throw new Error('no disk'); } } }, config: { nodeId: 'node-1', stateRoot: '/tmp/x', backends: { x: { driver: 'boom' } } } }));
    expect(err.kind).toBe('Internal');
    expect(err.message).toContain('"x"');
  });
});
