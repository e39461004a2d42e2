// bindTarget's file targets (block volumes), with real bind mounts (the machine is root).
// node:fs is wrapped with pass-through spies so the test can see that the request path
// makes the file with fs/promises and never blocks the event loop with *Sync calls.
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { findLeftovers, sweepRoot } from '../test/helpers/cleanup.js';
import { createExec } from './os/exec.js';
import { isMountpoint } from './os/mounts.js';
import { bindTarget, unbindTarget } from './targets.js';

const sync = vi.hoisted(() => ({ calls: [] as string[] }));
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const spy = <F extends (...a: never[]) => unknown>(name: string, f: F) =>
    ((...a: Parameters<F>) => {
      sync.calls.push(name);
      return f(...a);
    }) as unknown as F;
  const wrapped = {
    ...actual,
    openSync: spy('openSync', actual.openSync),
    closeSync: spy('closeSync', actual.closeSync),
    statSync: spy('statSync', actual.statSync),
    mkdirSync: spy('mkdirSync', actual.mkdirSync),
    writeFileSync: spy('writeFileSync', actual.writeFileSync),
  };
  return { ...wrapped, default: wrapped };
});

describe('bindTarget with a file target', () => {
  const exec = createExec();
  let root: string;
  let src: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-target-file-'));
    src = join(root, 'device');
    await writeFile(src, 'device contents');
    sync.calls.length = 0;
  });
  afterEach(async () => {
    try {
      const left = await findLeftovers(root);
      await sweepRoot(root);
      expect(left, 'the test left bind mounts behind').toEqual({ mounts: [], loops: [] });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('creates a missing file (and its parents) without blocking calls, and binds onto it', async () => {
    const target = join(root, 'pods', 'p', 'dev', 'blk');
    const bound = await bindTarget(exec, src, target, { readOnly: false, file: true });
    expect(bound.created).toBe(true);
    expect(sync.calls).toEqual([]);
    expect(await isMountpoint(target)).toBe(true);
    expect(await readFile(target, 'utf8')).toBe('device contents');
    await unbindTarget(exec, { target, created: bound.created, mount: bound.mount, source: src });
    // The empty file it made is removed again by unbind.
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('never truncates nor removes an existing file it did not make', async () => {
    const target = join(root, 'existing');
    await writeFile(target, 'keep me');
    const bound = await bindTarget(exec, src, target, { readOnly: true, file: true });
    expect(bound.created).toBe(false);
    expect(sync.calls).toEqual([]);
    expect(await readFile(target, 'utf8')).toBe('device contents');
    await unbindTarget(exec, { target, created: bound.created, mount: bound.mount, source: src });
    expect(await isMountpoint(target)).toBe(false);
    expect(await readFile(target, 'utf8')).toBe('keep me');
  });

  it('keeps an empty file it did not make', async () => {
    const target = join(root, 'empty');
    await writeFile(target, '');
    const bound = await bindTarget(exec, src, target, { readOnly: false, file: true });
    await unbindTarget(exec, { target, created: bound.created, mount: bound.mount, source: src });
    expect((await stat(target)).size).toBe(0);
  });

  it('refuses a directory where a file is needed, naming target, and mounts nothing', async () => {
    const target = join(root, 'a-dir');
    await mkdir(target);
    await expect(bindTarget(exec, src, target, { readOnly: false, file: true }))
      .rejects.toMatchObject({ kind: 'InvalidArgument', field: 'target' });
    expect(await isMountpoint(target)).toBe(false);
    expect((await stat(target)).isDirectory()).toBe(true);
  });
});
