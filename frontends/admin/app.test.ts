// The admin app in-process (app.request, no socket) over a service with the fake backend,
// plus the error mapping both ways and the metrics it serves.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../../test/fake/harness.js';
import { LOOP_LIKE } from '../../test/fake/fake.js';
import { createMetrics } from '../../cli/metrics.js';
import { BerthError, ERROR_KINDS } from '../../core/errors.js';
import { createSilentLogger } from '../../core/log.js';
import { createAdminApp } from './app.js';
import { fromErrorResponse, httpStatus, kindForStatus, toErrorBody } from './errors.js';

describe('admin error mapping', () => {
  it('round-trips every kind through status + body', () => {
    for (const kind of ERROR_KINDS) {
      const err = new BerthError(kind, `a ${kind}`, { field: kind === 'InvalidArgument' ? 'size' : undefined });
      const status = httpStatus(kind);
      expect(status).toBeGreaterThanOrEqual(400);
      const back = fromErrorResponse(status, JSON.parse(JSON.stringify(toErrorBody(err))));
      expect(back).toBeInstanceOf(BerthError);
      expect(back.toJSON()).toEqual(err.toJSON());
    }
  });

  it('falls back on the status for bodies that are not ours', () => {
    expect(fromErrorResponse(404, '<html>')).toMatchObject({ kind: 'NotFound' });
    expect(fromErrorResponse(502, { error: { kind: 'Bogus' } })).toMatchObject({ kind: 'Internal' });
    expect(kindForStatus(423)).toBe('Busy');
    expect(kindForStatus(413)).toBe('InvalidArgument');
  });
});

describe('admin app (in-process)', () => {
  let h: FakeHarness;
  let metrics: ReturnType<typeof createMetrics>;
  let app: ReturnType<typeof createAdminApp>;
  beforeEach(async () => {
    metrics = createMetrics({ volumes: () => h.svc.status().volumes });
    h = await createFakeHarness({ observer: (r) => metrics.observe(r) });
    app = createAdminApp({ service: h.svc, log: createSilentLogger(), metrics: metrics.render });
  });
  afterEach(() => h.cleanup());

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

  it('creates with units, labels and options and renders the volume', async () => {
    const res = await post('/v1/volumes', { name: 'a', size: '1GiB', labels: { team: 'x' } });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'a', sizeBytes: 2 ** 30, labels: { team: 'x' } });
    const list = await app.request('/v1/volumes?label=team=x');
    expect(((await list.json()) as unknown[]).length).toBe(1);
    const none = await app.request('/v1/volumes?label=team=y');
    expect(await none.json()).toEqual([]);
  });

  it('names bare fields (not "body.size") in errors from the shared option parser', async () => {
    const res = await post('/v1/volumes', { name: 'a', size: '1 parsec' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { field: string; message: string } };
    expect(body.error.field).toBe('size');
    expect(body.error.message.startsWith('size:')).toBe(true);
  });

  it('records the calling frontend from X-Berth-Frontend in metrics', async () => {
    await post('/v1/volumes', { name: 'f' }, { 'x-berth-frontend': 'dvdcli' });
    const text = await (await app.request('/metrics')).text();
    expect(text).toMatch(/berth_operations_total\{frontend="dvdcli",op="create",outcome="ok"\} 1/);
    expect(text).toMatch(/^berth_volumes 1$/m);
  });

  it('requires the bearer token when built with one', async () => {
    const tcp = createAdminApp({ service: h.svc, log: createSilentLogger(), token: 't0ken' });
    expect((await tcp.request('/v1/status')).status).toBe(401);
    expect((await tcp.request('/v1/status', { headers: { authorization: 'Bearer t0ken' } })).status).toBe(200);
  });

  it('streams NDJSON progress then the volume for a clone with ?progress=true, and a plain 201 otherwise', async () => {
    // A backend that clones (the default fake does not).
    await h.cleanup();
    h = await createFakeHarness({ backends: { local: { capabilities: LOOP_LIKE } } });
    app = createAdminApp({ service: h.svc, log: createSilentLogger() });
    await post('/v1/volumes', { name: 'src', size: '1GiB' });
    const res = await post('/v1/volumes?progress=true', { name: 'copy', fromVolume: 'src' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.slice(0, -1).every((l) => 'progress' in l)).toBe(true);
    expect(lines.at(-2)).toEqual({ progress: { doneBytes: 2 ** 30, totalBytes: 2 ** 30 } });
    expect(lines.at(-1)).toMatchObject({ volume: { name: 'copy', sizeBytes: 2 ** 30 } });

    const plain = await post('/v1/volumes', { name: 'copy2', fromVolume: 'src' });
    expect(plain.status).toBe(201);
    expect(plain.headers.get('content-type')).toMatch(/^application\/json/);

    // A snapshot streams the same way, its result under "snapshot".
    const snap = await post('/v1/snapshots?progress=true', { name: 's1', volume: 'src' });
    expect(snap.status).toBe(200);
    const snapLines = (await snap.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(snapLines).toEqual([
      { progress: { doneBytes: 2 ** 30, totalBytes: 2 ** 30 } },
      { snapshot: expect.objectContaining({ name: 's1', readyToUse: true }) },
    ]);
    expect((await post('/v1/snapshots', { name: 's2', volume: 'src' })).status).toBe(201);
  });

  it('streams the error as the last line when the create fails after the stream started (Accept: application/x-ndjson)', async () => {
    const res = await post('/v1/volumes', { name: 'r', fromSnapshot: 'no-such-snap' }, { accept: 'application/x-ndjson' });
    expect(res.status).toBe(200);
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(lines.at(-1)).toMatchObject({ error: { kind: 'NotFound' } });
    expect(await (await app.request('/v1/volumes/r')).json()).toMatchObject({ error: { kind: 'NotFound' } });
  });

  it('keeps the ordinary status for a bad body or a bad progress flag even when streaming is asked for', async () => {
    const res = await post('/v1/volumes?progress=true', { name: 'a', size: '1 parsec' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { kind: 'InvalidArgument', field: 'size' } });
    const flag = await post('/v1/volumes?progress=maybe', { name: 'a' });
    expect(flag.status).toBe(400);
    expect(await flag.json()).toMatchObject({ error: { field: 'progress' } });
  });

  it('refuses prototype keys by name and never applies them (issue 9)', async () => {
    const refusals: Array<[string, string]> = [
      ['{"name":"p1","__proto__":{"size":"64MiB","backend":"loop"}}', '__proto__'],
      ['{"name":"p2","toString":{"a":"b"}}', 'toString'],
      ['{"name":"p3","hasOwnProperty":{}}', 'hasOwnProperty'],
      ['{"name":"p4","labels":{"__proto__":"x"}}', 'labels.__proto__'],
      ['{"name":"p5","options":{"__proto__":"x"}}', 'options.__proto__'],
    ];
    for (const [body, field] of refusals) {
      const res = await app.request('/v1/volumes', { method: 'POST', body });
      expect({ body, status: res.status, error: ((await res.json()) as { error: object }).error })
        .toEqual({ body, status: 400, error: expect.objectContaining({ kind: 'InvalidArgument', field }) });
    }
    expect(await h.svc.list({}, { frontend: 'admin' })).toEqual([]);
    // A label filter keyed __proto__ is refused, not dropped (which would list everything).
    await post('/v1/volumes', { name: 'listed' });
    const filter = await app.request('/v1/volumes?label=__proto__=x');
    expect(filter.status).toBe(400);
    expect(await filter.json()).toMatchObject({ error: { field: 'labels.__proto__' } });
    // Ordinary keys that Object.prototype also has are data like any other.
    const ok = await post('/v1/volumes', { name: 'p6', labels: { constructor: 'x', toString: 'y' } });
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as { labels: object }).labels).toEqual({ constructor: 'x', toString: 'y' });
  });

  it('refuses a body over 1 MiB with 413 naming "body", by Content-Length or while streaming, and takes one just under it', async () => {
    const big = JSON.stringify({ name: 'big', labels: { k: 'x'.repeat(2 * 1024 * 1024) } });
    const byLength = await app.request('/v1/volumes', { method: 'POST', body: big, headers: { 'content-length': String(big.length) } });
    expect(byLength.status).toBe(413);
    expect(await byLength.json()).toEqual({ error: { kind: 'InvalidArgument', field: 'body', message: expect.stringMatching(/^body: is larger than 1 MiB/) } });

    let sent = 0;
    const chunk = new TextEncoder().encode(' '.repeat(64 * 1024));
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        controller.enqueue(chunk); // whitespace forever: only the cap can end this request
      },
    });
    const streamed = await app.request('/v1/volumes', { method: 'POST', body: endless, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await streamed.json()).toMatchObject({ error: { field: 'body' } });
    expect(sent).toBeLessThan(2 * 1024 * 1024);

    const padded = `${JSON.stringify({ name: 'fits' })}${' '.repeat(1024 * 1024 - 100)}`;
    expect((await app.request('/v1/volumes', { method: 'POST', body: padded })).status).toBe(201);
    expect(await h.svc.list({}, { frontend: 'admin' })).toEqual([expect.objectContaining({ name: 'fits' })]);
  });

  it('mount -> path -> unmount with references', async () => {
    await post('/v1/volumes', { name: 'm' });
    const m = (await (await post('/v1/volumes/m/mount', { consumer: 'c1' })).json()) as { path: string; existing: boolean };
    expect(m.existing).toBe(false);
    expect(await (await app.request('/v1/volumes/m/path')).json()).toEqual({ path: m.path });
    const u = (await (await post('/v1/volumes/m/unmount', { consumer: 'c1' })).json()) as { mounts: unknown[] };
    expect(u.mounts).toEqual([]);
  });
});
