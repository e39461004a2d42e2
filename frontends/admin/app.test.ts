// The admin app in-process (app.request, no socket) over a service with the fake backend,
// plus the error mapping both ways and the metrics it serves.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeHarness, type FakeHarness } from '../../backends/fake/harness.js';
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

  it('mount -> path -> unmount with references', async () => {
    await post('/v1/volumes', { name: 'm' });
    const m = (await (await post('/v1/volumes/m/mount', { consumer: 'c1' })).json()) as { path: string; existing: boolean };
    expect(m.existing).toBe(false);
    expect(await (await app.request('/v1/volumes/m/path')).json()).toEqual({ path: m.path });
    const u = (await (await post('/v1/volumes/m/unmount', { consumer: 'c1' })).json()) as { mounts: unknown[] };
    expect(u.mounts).toEqual([]);
  });
});
