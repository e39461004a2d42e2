/**
 * Create's order of checks: every bad field is refused naming it before the request is
 * compared with an existing volume of that name; only a well-formed request is then
 * idempotent (same parameters) or AlreadyExists (different ones).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../test/fake/harness.js';
import { LOOP_LIKE } from '../test/fake/fake.js';
import { CATALOGS, useCatalogs } from '../test/fake/catalogs.js';
import { BerthError } from './errors.js';
import type { CreateVolumeRequest, OpContext } from './service.js';

const ctx: OpContext = { frontend: 'admin' };
const catalogs = useCatalogs();
const MiB = 2 ** 20;

async function errorOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err, 'expected a BerthError').toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe.each(CATALOGS)('create: fields are checked before the existing volume is compared (%s catalog)', (kind) => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await catalogs.harness(kind, {
      backends: { local: { capabilities: LOOP_LIKE, minSizeBytes: 16 * MiB }, plain: {} },
    });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  const base = { name: 'v1', sizeBytes: 64 * MiB, fsType: 'xfs' } as const;

  // Each request differs from v1 (so a compare-first create says AlreadyExists) and has one bad field.
  it.each<[string, Partial<CreateVolumeRequest>, string, string]>([
    ['an unparsable size', { sizeBytes: 'banana' as unknown as number }, 'InvalidArgument', 'size'],
    ['an unknown backend', { backend: 'nope' }, 'InvalidArgument', 'backend'],
    ['a filesystem the named backend cannot make', { backend: 'plain' }, 'InvalidArgument', 'fs'],
    ['an unknown option', { backend: 'plain', fsType: undefined, options: { zzz: '1' } }, 'InvalidArgument', 'opts.zzz'],
    ['a size below the backend minimum', { sizeBytes: MiB }, 'OutOfRange', 'size'],
    ['a filesystem the backend does not offer', { fsType: 'btrfs' }, 'InvalidArgument', 'fs'],
    ['block mode on a backend without block', { backend: 'plain', fsType: undefined, volumeMode: 'block' }, 'InvalidArgument', 'mode'],
  ])('%s on an existing name is refused naming the field', async (_what, change, kind, field) => {
    const v1 = await h.svc.create(base, ctx);
    const err = await errorOf(h.svc.create({ ...base, ...change }, ctx));
    expect({ kind: err.kind, field: err.field }).toEqual({ kind, field });
    expect(err.message.startsWith(`${field}: `), err.message).toBe(true);
    expect(h.svc.find('v1')).toMatchObject({ id: v1.id, backend: 'local', sizeBytes: 64 * MiB, fsType: 'xfs' });
  });

  it('a source that does not exist is NotFound, not AlreadyExists', async () => {
    await h.svc.create(base, ctx);
    const err = await errorOf(h.svc.create({ ...base, source: { kind: 'snapshot', ref: 'no-such-snap' } }, ctx));
    expect(err.kind).toBe('NotFound');
  });

  it('a well-formed request is then idempotent or AlreadyExists naming what differs', async () => {
    const v1 = await h.svc.create(base, ctx);
    expect((await h.svc.create(base, ctx)).id).toBe(v1.id);
    expect((await h.svc.create({ name: 'v1' }, ctx)).id).toBe(v1.id);
    const other = await errorOf(h.svc.create({ name: 'v1', backend: 'plain' }, ctx));
    expect(other.kind).toBe('AlreadyExists');
    expect(other.message).toContain('backend');
    const bigger = await errorOf(h.svc.create({ ...base, sizeBytes: 128 * MiB }, ctx));
    expect(bigger.kind).toBe('AlreadyExists');
    expect(bigger.message).toContain('size');
    expect(h.backend.callsTo('create')).toEqual([v1.id]);
  });

  it('a bad request leaves an interrupted create alone; a good one finishes it and creates', async () => {
    // A create whose backend call and cleanup both fail leaves a 'creating' row behind.
    h.backend.failNext('create');
    h.backend.failNext('delete');
    expect((await errorOf(h.svc.create(base, ctx))).kind).toBe('Internal');
    const stale = h.catalog.getVolumeByName('v1');
    expect(stale?.status).toBe('creating');
    h.backend.resetCalls();

    const err = await errorOf(h.svc.create({ ...base, backend: 'nope' }, ctx));
    expect(err.field).toBe('backend');
    expect(h.catalog.getVolumeByName('v1')).toMatchObject({ id: stale!.id, status: 'creating' });
    expect(h.backend.callsTo('delete')).toEqual([]);

    const v1 = await h.svc.create(base, ctx);
    expect(v1.id).not.toBe(stale!.id);
    expect(v1.status).toBe('ready');
    expect(h.backend.callsTo('delete')).toEqual([stale!.id]);
  });
});

describe('create: placement (the nodes the caller needs the volume on)', () => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await createFakeHarness({ nodeId: 'here', backends: { local: {}, nfs: { capabilities: { scope: 'global' } } } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  it('makes a node-local volume only when this node is wanted; a shared one anywhere; nothing is made when refused', async () => {
    const e = await errorOf(h.svc.create({ name: 'elsewhere', nodes: ['there', 'yonder'] }, ctx));
    expect([e.kind, e.field]).toEqual(['ResourceExhausted', 'nodes']);
    expect(e.message).toMatch(/^nodes: backend "local" .*this is node "here".*"there", "yonder": make it there$/);
    expect(await h.svc.list({}, ctx)).toEqual([]);
    expect(h.backend.callsTo('create')).toEqual([]);

    expect((await h.svc.create({ name: 'here-too', nodes: ['there', 'here'] }, ctx)).backend).toBe('local');
    expect((await h.svc.create({ name: 'shared', backend: 'nfs', nodes: ['there'] }, ctx)).backend).toBe('nfs');
    // A retry finds the volume where it was made, whatever it asks now.
    expect((await h.svc.create({ name: 'here-too', nodes: ['there'] }, ctx)).name).toBe('here-too');
  });

  it('names a malformed list', async () => {
    for (const [nodes, field] of [[[], 'nodes'], ['here', 'nodes'], [['here', ''], 'nodes[1]'], [[7], 'nodes[0]']] as const) {
      const e = await errorOf(h.svc.create({ name: 'v', nodes: nodes as unknown as string[] }, ctx));
      expect([e.kind, e.field]).toEqual(['InvalidArgument', field]);
    }
  });
});

describe('create: how its intent is committed (embedded catalog)', () => {
  let h: FakeHarness;
  beforeEach(async () => {
    h = await createFakeHarness({ backends: { local: { discardsEmpty: true, capabilities: { clones: true } }, keeper: {} } });
  });
  afterEach(async () => {
    await h.cleanup();
  });

  /** Whether each store transaction `fn` commits is fsynced (TxOptions.durable). */
  async function durability(fn: () => Promise<unknown>): Promise<boolean[]> {
    const seen: boolean[] = [];
    const tx = h.store.tx.bind(h.store);
    h.store.tx = (f, o) => {
      seen.push(o?.durable !== false);
      return tx(f, o);
    };
    try {
      await fn();
    } finally {
      h.store.tx = tx;
    }
    return seen;
  }

  it('skips the fsync of the intent only for a plain create on a backend that removes an empty leftover; the answer waits for a durable commit', async () => {
    // intent, then 'ready'
    expect(await durability(() => h.svc.create({ name: 'plain' }, ctx))).toEqual([false, true]);
    expect(await durability(() => h.svc.create({ name: 'kept', backend: 'keeper' }, ctx))).toEqual([true, true]);
    // A copy holds data from its first byte: a leftover of it is not empty.
    expect(await durability(() => h.svc.create({ name: 'copy', source: { kind: 'volume', ref: 'plain' } }, ctx))).toEqual([true, true]);
    expect((await h.svc.inspect('plain', ctx)).status).toBe('ready');
  });
});
