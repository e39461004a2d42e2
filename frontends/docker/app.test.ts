// The Docker plugin protocol in-process (app.request), against the real core with the
// fake backend. Bodies are sent the way Docker sends them: no Content-Type, JSON with a
// trailing newline, or nothing at all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Hono } from 'hono';
import { createFakeBackend, LOOP_LIKE } from '../../test/fake/fake.js';
import {
  createExec, createSilentLogger, createVolumeService, openStore, type CoreVolumeService,
} from '../../core/index.js';
import { startFakeCluster } from '../../test/helpers/fake-cluster.js';
import { useTmpRoots } from '../../test/helpers/tmp-root.js';
import { createDockerApp, DOCKER_PLUGIN_CONTENT_TYPE } from './app.js';

const BACKEND = 'fake';
let dir: string;
let service: CoreVolumeService;
let app: Hono;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-docker-app-'));
  const log = createSilentLogger();
  const backend = createFakeBackend({ name: BACKEND, root: join(dir, 'fake') });
  const loopLike = createFakeBackend({ name: 'blk', root: join(dir, 'blk'), capabilities: LOOP_LIKE });
  service = await createVolumeService({
    config: { nodeId: 'n1', stateRoot: dir, defaultBackend: BACKEND, lockWaitMs: 5_000, targets: { allowedPrefixes: [] } },
    store: openStore(join(dir, 'state.db')),
    backends: new Map([[BACKEND, backend], ['blk', loopLike]]),
    exec: createExec(),
    log,
    version: 'test',
  });
  app = createDockerApp({ service, log });
});
afterEach(async () => {
  await service.close();
  rmSync(dir, { recursive: true, force: true });
});

/** POSTs like Docker: raw text body, no Content-Type header. */
async function call(method: string, body?: unknown, raw?: string) {
  const text = raw ?? (body === undefined ? '' : `${JSON.stringify(body)}\n`);
  const res = await app.request(`/${method}`, { method: 'POST', body: text });
  const json = (await res.json()) as Record<string, any>;
  return { status: res.status, type: res.headers.get('content-type'), json };
}

describe('Plugin.Activate and Capabilities', () => {
  it('activates with an empty body and answers with the plugin content type', async () => {
    const r = await call('Plugin.Activate');
    expect(r.status).toBe(200);
    expect(r.type).toBe(DOCKER_PLUGIN_CONTENT_TYPE);
    expect(r.json).toEqual({ Implements: ['VolumeDriver'] });
  });

  it('reports local scope on a single node, with {} or no body', async () => {
    expect((await call('VolumeDriver.Capabilities', {})).json).toEqual({ Capabilities: { Scope: 'local' } });
    expect((await call('VolumeDriver.Capabilities')).json).toEqual({ Capabilities: { Scope: 'local' } });
  });

  it('reports local scope on a single node even when every backend is shared storage: its names are its own', async () => {
    await service.close();
    const shared = createFakeBackend({ name: 'nfs', root: join(dir, 'nfs'), capabilities: { scope: 'global' } });
    service = await createVolumeService({
      config: { nodeId: 'n1', stateRoot: dir, defaultBackend: 'nfs', lockWaitMs: 5_000, targets: { allowedPrefixes: [] } },
      store: openStore(join(dir, 'state-2.db')), backends: new Map([['nfs', shared]]), exec: createExec(), log: createSilentLogger(), version: 'test',
    });
    app = createDockerApp({ service, log: createSilentLogger() });
    expect((await call('VolumeDriver.Capabilities')).json).toEqual({ Capabilities: { Scope: 'local' } });
  });
});

describe('cluster mode (two nodes on one etcd)', () => {
  const roots = useTmpRoots();

  it('reports global scope on every node, whatever its backends, and a name created on one node is the volume on the other', async () => {
    const c = await startFakeCluster(roots.create('docker-app-cluster'), { nodes: ['dk-a', 'dk-b'], backends: { local: {} } });
    const log = createSilentLogger();
    const [a, b] = c.nodes.map((n) => createDockerApp({ service: n.svc, log })) as [Hono, Hono];
    const post = async (on: Hono, method: string, body: unknown) =>
      (await (await on.request(`/${method}`, { method: 'POST', body: `${JSON.stringify(body)}\n` })).json()) as Record<string, any>;
    for (const on of [a, b]) expect(await post(on, 'VolumeDriver.Capabilities', {})).toEqual({ Capabilities: { Scope: 'global' } });
    expect((await post(a, 'VolumeDriver.Create', { Name: 'pg' })).Err).toBe('');
    // What "global" promises Docker: the other node's Get finds it, with the node holding its data.
    const got = await post(b, 'VolumeDriver.Get', { Name: 'pg' });
    expect(got.Err).toBe('');
    expect(got.Volume.Status).toMatchObject({ id: c.node('dk-a').svc.find('pg')!.id, node: 'dk-a' });
    expect((await post(b, 'VolumeDriver.List', {})).Volumes).toEqual([{ Name: 'pg', Mountpoint: '' }]);
  });
});

describe('VolumeDriver.Create / Get / List', () => {
  it('creates from a newline-terminated body and Get describes the volume', async () => {
    expect((await call('VolumeDriver.Create', { Name: 'v1', Opts: { size: '64MiB' } })).json).toEqual({ Err: '' });
    const r = await call('VolumeDriver.Get', { Name: 'v1' });
    expect(r.json.Err).toBe('');
    expect(r.json.Volume.Name).toBe('v1');
    expect(r.json.Volume.Mountpoint).toBe('');
    expect(r.json.Volume.CreatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(r.json.Volume.Status).toMatchObject({
      backend: BACKEND, sizeBytes: 64 * 2 ** 20, mode: 'filesystem', mounts: 0, attachments: [],
    });
    expect(r.json.Volume.Status.id).toMatch(/^vol-/);
  });

  it('accepts Opts null or absent', async () => {
    expect((await call('VolumeDriver.Create', { Name: 'a', Opts: null })).json.Err).toBe('');
    expect((await call('VolumeDriver.Create', { Name: 'b' })).json.Err).toBe('');
    const list = await call('VolumeDriver.List', {});
    expect(list.json.Err).toBe('');
    expect(list.json.Volumes.map((v: { Name: string }) => v.Name).sort()).toEqual(['a', 'b']);
    expect(list.json.Volumes[0]).toHaveProperty('Mountpoint', '');
  });

  it('is idempotent for the same options and refuses different ones', async () => {
    await call('VolumeDriver.Create', { Name: 'v', Opts: { size: '1MiB' } });
    expect((await call('VolumeDriver.Create', { Name: 'v', Opts: { size: '1MiB' } })).json.Err).toBe('');
    expect((await call('VolumeDriver.Create', { Name: 'v', Opts: { size: '2MiB' } })).json.Err).toMatch(/v/);
  });

  it('names an unknown option in Err and creates nothing', async () => {
    const r = await call('VolumeDriver.Create', { Name: 'v', Opts: { bogus: 'x' } });
    expect(r.json.Err).toContain('bogus');
    expect((await call('VolumeDriver.Get', { Name: 'v' })).json.Err).toMatch(/not found/);
  });

  it('names an option the core refuses as the user typed it: -o backend=nope is opts.backend', async () => {
    const r = await call('VolumeDriver.Create', { Name: 'v', Opts: { backend: 'nope' } });
    expect(r.json.Err).toMatch(/^invalid argument: opts\.backend: unknown backend "nope"/);
    expect((await call('VolumeDriver.Get', { Name: 'v' })).json.Err).toMatch(/not found/);
  });

  it('names a malformed size and filesystem', async () => {
    expect((await call('VolumeDriver.Create', { Name: 'v', Opts: { size: '12 parsecs' } })).json.Err).toContain('opts.size');
    expect((await call('VolumeDriver.Create', { Name: 'v', Opts: { fs: 'ntfs' } })).json.Err).toContain('opts.fs');
  });

  it('refuses bad JSON, a non-object body, a missing Name and non-object Opts', async () => {
    expect((await call('VolumeDriver.Create', undefined, '{"Name": ')).json.Err).toMatch(/body.*JSON/);
    expect((await call('VolumeDriver.Create', undefined, '[1]\n')).json.Err).toMatch(/body/);
    expect((await call('VolumeDriver.Create', {})).json.Err).toMatch(/Name/);
    expect((await call('VolumeDriver.Create', { Name: 'v', Opts: 'size=1G' })).json.Err).toMatch(/Opts/);
    expect((await call('VolumeDriver.Create', { Name: '../etc' })).json.Err).toMatch(/name/i);
  });

  it('Get of an unknown volume answers Err with HTTP 500 (Podman reads Err only from a non-200 reply)', async () => {
    const r = await call('VolumeDriver.Get', { Name: 'nope' });
    expect(r.status).toBe(500);
    expect(r.json.Err).toMatch(/nope.*not found/);
    expect(r.json.Volume).toBeUndefined();
  });
});

describe('VolumeDriver.Mount / Unmount / Path', () => {
  const A = 'a'.repeat(64);
  const B = 'b'.repeat(64);

  it('counts one reference per Docker mount ID and releases on the last Unmount', async () => {
    await call('VolumeDriver.Create', { Name: 'v' });
    expect((await call('VolumeDriver.Path', { Name: 'v' })).json).toEqual({ Mountpoint: '', Err: '' });

    const m1 = await call('VolumeDriver.Mount', { Name: 'v', ID: A });
    expect(m1.json.Err).toBe('');
    expect(m1.json.Mountpoint).not.toBe('');
    const m2 = await call('VolumeDriver.Mount', { Name: 'v', ID: B });
    expect(m2.json.Mountpoint).toBe(m1.json.Mountpoint);

    const g = await call('VolumeDriver.Get', { Name: 'v' });
    expect(g.json.Volume.Mountpoint).toBe(m1.json.Mountpoint);
    expect(g.json.Volume.Status.mounts).toBe(2);
    expect((await call('VolumeDriver.Path', { Name: 'v' })).json.Mountpoint).toBe(m1.json.Mountpoint);
    expect(service.find('v')!.mounts.map((m) => m.consumer).sort()).toEqual([`docker:${A}`, `docker:${B}`]);

    expect((await call('VolumeDriver.Unmount', { Name: 'v', ID: A })).json).toEqual({ Err: '' });
    expect((await call('VolumeDriver.Get', { Name: 'v' })).json.Volume.Mountpoint).toBe(m1.json.Mountpoint);
    expect((await call('VolumeDriver.Unmount', { Name: 'v', ID: B })).json).toEqual({ Err: '' });
    const after = await call('VolumeDriver.Get', { Name: 'v' });
    expect(after.json.Volume.Mountpoint).toBe('');
    expect(after.json.Volume.Status.mounts).toBe(0);
  });

  it('gives dvdcli (no ID) one shared reference', async () => {
    await call('VolumeDriver.Create', { Name: 'v' });
    await call('VolumeDriver.Mount', { Name: 'v' });
    await call('VolumeDriver.Mount', { Name: 'v', ID: '' });
    expect(service.find('v')!.mounts.map((m) => [m.consumer, m.frontend])).toEqual([['dvdcli', 'dvdcli']]);
    await call('VolumeDriver.Unmount', { Name: 'v' });
    expect(service.find('v')!.mounts).toEqual([]);
  });

  it('refuses to hand Docker a block volume (it can only bind-mount directories)', async () => {
    expect((await call('VolumeDriver.Create', { Name: 'raw', Opts: { backend: 'blk', mode: 'block', size: '8MiB' } })).json.Err).toBe('');
    const r = await call('VolumeDriver.Mount', { Name: 'raw', ID: A });
    expect(r.json.Err).toMatch(/not supported: volume raw is a block volume/);
    expect(service.find('raw')!.mounts).toEqual([]);
  });

  it('Mount of an unknown volume answers Err naming it', async () => {
    expect((await call('VolumeDriver.Mount', { Name: 'ghost', ID: A })).json.Err).toMatch(/ghost/);
  });

  it('refuses a non-string ID', async () => {
    await call('VolumeDriver.Create', { Name: 'v' });
    expect((await call('VolumeDriver.Mount', { Name: 'v', ID: 7 })).json.Err).toMatch(/ID/);
  });
});

describe('VolumeDriver.Remove', () => {
  it('refuses while mounted, removes after the last Unmount, and a second Remove is fine', async () => {
    await call('VolumeDriver.Create', { Name: 'v' });
    await call('VolumeDriver.Mount', { Name: 'v', ID: 'c1' });
    const busy = await call('VolumeDriver.Remove', { Name: 'v' });
    expect(busy.json.Err).toMatch(/v/);
    expect(busy.json.Err).toMatch(/stop the containers/);
    expect(service.find('v')).not.toBeNull();

    await call('VolumeDriver.Unmount', { Name: 'v', ID: 'c1' });
    expect((await call('VolumeDriver.Remove', { Name: 'v' })).json).toEqual({ Err: '' });
    expect(service.find('v')).toBeNull();
    expect((await call('VolumeDriver.Remove', { Name: 'v' })).json).toEqual({ Err: '' });
    expect((await call('VolumeDriver.Unmount', { Name: 'v', ID: 'c1' })).json).toEqual({ Err: '' });
  });
});

describe('unknown methods', () => {
  it('answers 404 with Err', async () => {
    const r = await call('VolumeDriver.Frobnicate', {});
    expect(r.status).toBe(404);
    expect(r.json.Err).toMatch(/Frobnicate/);
  });
});

describe('the one log line per call', () => {
  it('logs Get of an unknown name and a successful Create at debug (the core logs the op at info), a failed Create at warn', async () => {
    const lines: Array<{ level: number; op: string; outcome: string; kind?: string }> = [];
    const { Writable } = await import('node:stream');
    const { createLogger } = await import('../../core/index.js');
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const logged = createDockerApp({ service, log: createLogger({ level: 'debug', destination: sink }) });
    const post = (method: string, body: unknown) => logged.request(`/${method}`, { method: 'POST', body: `${JSON.stringify(body)}\n` });
    await post('VolumeDriver.Get', { Name: 'nobody-has-this' });
    await post('VolumeDriver.Create', { Name: 'bad name!' });
    await post('VolumeDriver.Create', { Name: 'fine' });
    const ops = lines.filter((l) => l.op).map((l) => [l.op, l.level, l.outcome, l.kind]);
    // pino levels: 20 debug, 30 info, 40 warn
    expect(ops).toEqual([
      ['VolumeDriver.Get', 20, 'error', 'NotFound'],
      ['VolumeDriver.Create', 40, 'error', 'InvalidArgument'],
      ['VolumeDriver.Create', 20, 'ok', undefined],
    ]);
  });
});

describe('bounded, own-key input (issue 9)', () => {
  it('answers a body over 1 MiB with 413 and an Err naming the body, by Content-Length or while streaming', async () => {
    const big = `${JSON.stringify({ Name: 'big', Opts: { k: 'x'.repeat(2 * 1024 * 1024) } })}\n`;
    const byLength = await app.request('/VolumeDriver.Create', { method: 'POST', body: big, headers: { 'content-length': String(big.length) } });
    expect(byLength.status).toBe(413);
    expect(byLength.headers.get('content-type')).toBe(DOCKER_PLUGIN_CONTENT_TYPE);
    expect(await byLength.json()).toEqual({ Err: expect.stringMatching(/^invalid argument: body: is larger than 1 MiB/) });

    let sent = 0;
    const chunk = new TextEncoder().encode(' '.repeat(64 * 1024));
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const streamed = await app.request('/VolumeDriver.Create', { method: 'POST', body: endless, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as { Err: string }).Err).toMatch(/body: is larger than 1 MiB/);
    expect(sent).toBeLessThan(2 * 1024 * 1024);
    expect(await service.list({}, { frontend: 'docker' })).toEqual([]);
  });

  it('refuses an Opts key "__proto__" by name instead of dropping it', async () => {
    const r = await call('VolumeDriver.Create', undefined, '{"Name":"p","Opts":{"__proto__":"x","size":"1GiB"}}\n');
    expect(r.json.Err).toMatch(/opts\.__proto__/);
    const viaLabel = await call('VolumeDriver.Create', { Name: 'q', Opts: { 'label.__proto__': 'x' } });
    expect(viaLabel.json.Err).toMatch(/opts\.label\.__proto__/);
    expect(await service.list({}, { frontend: 'docker' })).toEqual([]);
  });

  it('answers a huge name quickly with a short Err', async () => {
    const r = await call('VolumeDriver.Get', { Name: 'v'.repeat(500_000) });
    expect(r.json.Err).toMatch(/more characters/);
    expect(r.json.Err.length).toBeLessThan(1000);
  });
});
