import { afterEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../../test/fake/harness.js';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { BerthError, type ClusterStatus } from '../../core/index.js';
import { consumerFor, createError, createRequest, parseBody, rfc3339, scopeOf } from './translate.js';

const member: ClusterStatus = {
  mode: 'etcd', endpoints: ['http://127.0.0.1:2379'], prefix: '/berth/', lease: '1a2b', sinceRenewalMs: 10, leaseTtlMs: 10_000, nodes: 3, leader: null, selfFenced: false, events: [], fences: [],
};

describe('translate', () => {
  it('parses empty, whitespace, null and newline-terminated bodies', () => {
    expect(parseBody('')).toEqual({});
    expect(parseBody(' \n')).toEqual({});
    expect(parseBody('null')).toEqual({});
    expect(parseBody('{"Name":"v"}\n')).toEqual({ Name: 'v' });
    expect(() => parseBody('"v"')).toThrow(/body: request body must be a JSON object/);
  });

  it('maps Docker mount IDs to one consumer each and no ID to the shared dvdcli reference', () => {
    expect(consumerFor({ ID: 'abc' })).toEqual({ consumer: 'docker:abc', frontend: 'docker' });
    expect(consumerFor({})).toEqual({ consumer: 'dvdcli', frontend: 'dvdcli' });
    expect(consumerFor({ ID: null })).toEqual({ consumer: 'dvdcli', frontend: 'dvdcli' });
  });

  it('formats CreatedAt as RFC 3339 that Go parses (no milliseconds)', () => {
    expect(rfc3339('2024-05-06T07:08:09.123Z')).toBe('2024-05-06T07:08:09Z');
  });

  it('answers global scope in cluster mode (one volume per name on every node), local on a single node', () => {
    expect(scopeOf({ mode: 'embedded' })).toBe('local');
    expect(scopeOf(member)).toBe('global');
    // A member that lost its lease (etcd away) is still a member: names stay cluster-wide.
    expect(scopeOf({ ...member, lease: null, sinceRenewalMs: null })).toBe('global');
  });
});

describe('Create option errors name the option as typed, with the opts. prefix', () => {
  let h: FakeHarness | null = null;
  afterEach(async () => {
    await h?.cleanup();
    h = null;
  });

  // Each of these passes the option parser and is refused by the core or the backend.
  it.each<[Record<string, string>, string]>([
    [{ backend: 'nope' }, 'opts.backend'],
    [{ fsType: 'btrfs' }, 'opts.fsType'],
    [{ fs: 'xfs', backend: 'plain' }, 'opts.fs'],
    [{ size: '1MiB' }, 'opts.size'],
    [{ volumeMode: 'block', backend: 'plain' }, 'opts.volumeMode'],
    [{ fromSnapshot: 'x'.repeat(300) }, 'opts.fromSnapshot'],
    [{ fromVolume: 'src', backend: 'plain' }, 'opts.fromVolume'],
    [{ zzz: '1' }, 'opts.zzz'],
  ])('-o %j -> %s', async (opts, field) => {
    h = await createFakeHarness({ backends: { local: { capabilities: LOOP_LIKE, minSizeBytes: 16 * 2 ** 20 }, plain: {} } });
    await h.svc.create({ name: 'src' }, { frontend: 'admin' });
    const body = { Name: 'v', Opts: opts };
    const err = await h.svc.create(createRequest(body), { frontend: 'docker' }).then(() => null, (e: unknown) => createError(e, body));
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).field).toBe(field);
    expect((err as BerthError).message.startsWith(`${field}: `), (err as BerthError).message).toBe(true);
  });

  it('the core keeps its own names (the admin API names its JSON fields so); other errors pass unchanged', async () => {
    h = await createFakeHarness({ backends: { local: {} } });
    const err = await h.svc.create({ name: 'v', backend: 'nope' }, { frontend: 'admin' }).then(() => null, (e: unknown) => e);
    expect((err as BerthError).field).toBe('backend');
    const other = new BerthError('NotFound', 'volume "x" not found');
    expect(createError(other, { Name: 'v', Opts: { backend: 'nope' } })).toBe(other);
  });
});
