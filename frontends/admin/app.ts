/**
 * The admin REST API (/v1, JSON) as a Hono app: each route checks its input, makes one
 * VolumeService call and renders the result; errors go through errors.ts only. The same
 * app serves the unix socket and, built with a token, the optional TCP listener.
 * One structured log line per operation comes from the core's observer; this file adds an
 * HTTP access line at debug level only.
 *
 * POST /v1/volumes and POST /v1/snapshots can stream: with `?progress=true` or
 * `Accept: application/x-ndjson` they answer 200 with NDJSON, one
 * `{"progress":{"doneBytes","totalBytes"}}` line per copy progress event of a restore, a
 * clone or a snapshot, then exactly one last line, `{"volume":{...}}` / `{"snapshot":{...}}`
 * or `{"error":{kind,message,field}}` (the status is sent before the outcome is known, so
 * the last line decides). Errors found before the create starts (a bad body) keep their
 * ordinary status. Without either, the reply is the plain JSON every other client expects.
 */
import { Hono, type Context } from 'hono';
import { timingSafeEqual } from 'node:crypto';
import {
  asBerthError, BerthError, clip, invalidArgument, parseSize, parseVolumeOptions, setOwn, validateVolumeName,
  type CreateVolumeRequest, type Frontend, type Logger, type OpContext, type VolumeService,
} from '../../core/index.js';
import { limitBody, MAX_BODY_TEXT } from '../body-limit.js';
import { bool, parseBody, size, str, stringMap, strings, type Fields, type Shape } from './body.js';
import { BODY_TOO_LARGE_STATUS, httpStatus, toErrorBody } from './errors.js';
import type { DaemonInfo } from './client.js';

export interface AdminAppOptions {
  readonly service: VolumeService;
  readonly log: Logger;
  /** Prometheus exposition for GET /metrics; the daemon owns the registry. */
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Added to GET /v1/status as `daemon` (sockets, state root, pid); the daemon supplies it. */
  readonly daemonInfo?: () => DaemonInfo;
  /** When set, every request must carry `Authorization: Bearer <token>` (the TCP listener). */
  readonly token?: string | null;
}

type Env = { Variables: { ctx: OpContext } };

/** Frontends that reach the core through this API say who they are in X-Berth-Frontend. */
const CALLER_FRONTENDS: readonly Frontend[] = ['admin', 'flexvolume', 'dvdcli'];

/**
 * Builds the admin API app.
 * @example const app = createAdminApp({ service, log }); await app.request('/v1/status');
 */
export function createAdminApp(o: AdminAppOptions): Hono<Env> {
  const { service, log } = o;
  const app = new Hono<Env>();

  app.onError((err, c) => {
    if (!(err instanceof BerthError)) log.error({ err }, 'admin API: unexpected error');
    const e = asBerthError(err);
    return c.json(toErrorBody(e), httpStatus(e.kind));
  });
  app.notFound((c) => {
    const e = new BerthError('NotFound', `no route ${c.req.method} ${c.req.path}`);
    return c.json(toErrorBody(e), httpStatus(e.kind));
  });

  app.use('*', async function accessLog(c, next) {
    const started = performance.now();
    await next();
    log.debug({ method: c.req.method, path: clip(c.req.path), status: c.res.status, ms: Math.round(performance.now() - started) }, 'http');
  });

  if (o.token) {
    const expected = Buffer.from(`Bearer ${o.token}`);
    app.use('*', async function bearerAuth(c, next) {
      const got = Buffer.from(c.req.header('authorization') ?? '');
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        // 401 is HTTP's own answer for authentication, not an error kind of the service,
        // so it is the one status not taken from errors.ts.
        const e = new BerthError('FailedPrecondition', 'missing or wrong bearer token');
        return c.json(toErrorBody(e), 401);
      }
      await next();
    });
  }

  // After authentication: a caller without the token gets nothing of its body read.
  app.use('*', limitBody((c, limit) => {
    const e = invalidArgument('body', `is larger than ${MAX_BODY_TEXT} (${limit} bytes); no admin request needs that much`);
    log.warn({ method: c.req.method, path: clip(c.req.path), status: BODY_TOO_LARGE_STATUS }, 'admin API: request body too large');
    return c.json(toErrorBody(e), BODY_TOO_LARGE_STATUS);
  }));

  app.use('/v1/*', async function opContext(c, next) {
    const frontend = c.req.header('x-berth-frontend') ?? 'admin';
    if (!(CALLER_FRONTENDS as readonly string[]).includes(frontend)) {
      throw invalidArgument('X-Berth-Frontend', `"${clip(frontend)}" is not one of ${CALLER_FRONTENDS.join(', ')}`);
    }
    c.set('ctx', { frontend: frontend as Frontend });
    await next();
  });

  // Volumes
  app.get('/v1/volumes', async (c) => {
    const labels: Record<string, string> = {};
    for (const l of c.req.queries('label') ?? []) {
      const eq = l.indexOf('=');
      if (eq <= 0) throw invalidArgument('label', `"${clip(l)}" must be key=value`);
      setOwn(labels, l.slice(0, eq), l.slice(eq + 1));
    }
    const backend = c.req.query('backend');
    return c.json(await service.list({ ...(backend ? { backend } : {}), ...(Object.keys(labels).length ? { labels } : {}) }, c.var.ctx));
  });

  app.post('/v1/volumes', async (c) => {
    const b = await readBody(c, CREATE_VOLUME);
    const name = validateVolumeName(b.name, 'name');
    // Typed fields go through the same parser every frontend uses; labels/options are
    // passed whole so an option key can never be mistaken for a typed field.
    const typed = withBareFields(() =>
      parseVolumeOptions(pick(b, ['size', 'fs', 'backend', 'mode', 'accessMode', 'preempt', 'fromSnapshot', 'fromVolume']), 'body'),
    );
    const req: CreateVolumeRequest = {
      name,
      ...typed,
      ...(b.labels !== undefined ? { labels: b.labels } : {}),
      ...(b.options !== undefined ? { options: b.options } : {}),
    };
    if (wantsProgress(c)) return streamed('volume', c.var.ctx, (ctx) => service.create(req, ctx));
    return c.json(await service.create(req, c.var.ctx), 201);
  });

  /**
   * Runs an operation that may copy data and streams its progress and outcome as NDJSON,
   * the result under `key`. A client that goes away does not stop the operation (the core
   * finishes or rolls back as for any other caller); the lines are just no longer written.
   */
  function streamed(key: 'volume' | 'snapshot', base: OpContext, run: (ctx: OpContext) => Promise<unknown>): Response {
    const encoder = new TextEncoder();
    let open = true;
    let out!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => void (out = controller),
      cancel: () => void (open = false),
    });
    const send = (line: unknown) => {
      if (!open) return;
      try {
        out.enqueue(encoder.encode(`${JSON.stringify(line)}\n`));
      } catch {
        open = false;
      }
    };
    const ctx: OpContext = { ...base, onProgress: (doneBytes, totalBytes) => send({ progress: { doneBytes, totalBytes } }) };
    void run(ctx)
      .then(
        (result) => send({ [key]: result }),
        (err: unknown) => {
          if (!(err instanceof BerthError)) log.error({ err }, 'admin API: unexpected error');
          send(toErrorBody(asBerthError(err)));
        },
      )
      .finally(() => {
        if (!open) return;
        open = false;
        out.close();
      });
    return new Response(body, { status: 200, headers: { 'content-type': NDJSON, 'cache-control': 'no-store' } });
  }

  app.get('/v1/volumes/:ref', async (c) => c.json(await service.inspect(c.req.param('ref'), c.var.ctx)));

  app.delete('/v1/volumes/:ref', async (c) => {
    const force = boolQuery(c.req.query('force'), 'force');
    await service.remove({ ref: c.req.param('ref'), force }, c.var.ctx);
    return c.body(null, 204);
  });

  app.post('/v1/volumes/:ref/attach', async (c) => {
    const b = await readBody(c, { node: str, readOnly: bool }, true);
    return c.json(await service.attach({ ref: c.req.param('ref'), ...b }, c.var.ctx));
  });

  app.post('/v1/volumes/:ref/detach', async (c) => {
    const b = await readBody(c, { node: str }, true);
    return c.json(await service.detach({ ref: c.req.param('ref'), ...b }, c.var.ctx));
  });

  app.post('/v1/volumes/:ref/mount', async (c) => {
    const b = await readBody(c, { consumer: str, target: str, readOnly: bool, mountFlags: strings, preempt: bool, fsType: str });
    const consumer = required(b.consumer, 'consumer');
    const res = await service.mount({ ref: c.req.param('ref'), ...b, consumer }, c.var.ctx);
    return c.json({ path: res.path, volume: res.volume, existing: res.existing });
  });

  app.post('/v1/volumes/:ref/unmount', async (c) => {
    const b = await readBody(c, { consumer: str });
    const consumer = required(b.consumer, 'consumer');
    return c.json(await service.unmount({ ref: c.req.param('ref'), consumer }, c.var.ctx));
  });

  app.get('/v1/volumes/:ref/path', async (c) => c.json({ path: await service.path(c.req.param('ref'), c.var.ctx) }));

  app.post('/v1/volumes/:ref/expand', async (c) => {
    const b = await readBody(c, { size });
    const sizeBytes = parseSize(required(b.size, 'size'), 'size');
    return c.json(await service.expand({ ref: c.req.param('ref'), sizeBytes }, c.var.ctx));
  });

  app.get('/v1/volumes/:ref/stats', async (c) => c.json(await service.stats(c.req.param('ref'), c.var.ctx)));

  // Snapshots
  app.get('/v1/snapshots', async (c) => {
    const volume = c.req.query('volume');
    return c.json(await service.listSnapshots(volume ? { volume } : {}, c.var.ctx));
  });
  app.post('/v1/snapshots', async (c) => {
    const b = await readBody(c, { name: str, volume: str });
    const name = validateVolumeName(b.name, 'name');
    const volume = required(b.volume, 'volume');
    if (wantsProgress(c)) return streamed('snapshot', c.var.ctx, (ctx) => service.createSnapshot({ name, volume }, ctx));
    return c.json(await service.createSnapshot({ name, volume }, c.var.ctx), 201);
  });
  app.get('/v1/snapshots/:ref', async (c) => c.json(await service.inspectSnapshot(c.req.param('ref'), c.var.ctx)));
  app.delete('/v1/snapshots/:ref', async (c) => {
    await service.deleteSnapshot(c.req.param('ref'), c.var.ctx);
    return c.body(null, 204);
  });

  // Daemon
  app.get('/v1/backends', (c) => c.json(service.backends()));
  app.get('/v1/nodes', (c) => c.json(service.nodes()));
  app.post('/v1/nodes/:node/fence', async (c) => c.json(await service.fenceNode(c.req.param('node'), c.var.ctx)));
  app.post('/v1/nodes/:node/unfence', async (c) => {
    await service.unfenceNode(c.req.param('node'), c.var.ctx);
    return c.body(null, 204);
  });
  app.post('/v1/volumes/:ref/move', async (c) => {
    const b = await readBody(c, { to: str });
    return c.json(await service.moveVolume({ ref: c.req.param('ref'), to: required(b.to, 'to') }, c.var.ctx));
  });
  app.get('/v1/capacity', async (c) => c.json(await service.capacity(c.req.query('backend') || undefined, c.var.ctx)));
  app.get('/v1/status', (c) => c.json(o.daemonInfo ? { ...service.status(), daemon: o.daemonInfo() } : service.status()));
  app.get('/v1/version', (c) => c.json({ version: service.status().version, nodeId: service.nodeId }));

  app.get('/metrics', async (c) => {
    if (!o.metrics) throw new BerthError('Unsupported', 'metrics are not enabled');
    const m = await o.metrics();
    return c.body(m.body, 200, { 'content-type': m.contentType });
  });

  return app;
}

/** The route's body, parsed and checked (body.ts). */
async function readBody<S extends Shape>(c: Context<Env>, shape: S, optional = false): Promise<Fields<S>> {
  return parseBody(await c.req.text(), shape, optional);
}

/** POST /v1/volumes. */
const CREATE_VOLUME = {
  name: str, size, fs: str, backend: str, mode: str, accessMode: str, preempt: bool,
  labels: stringMap, options: stringMap, fromSnapshot: str, fromVolume: str,
};

function required<T>(value: T | undefined, field: string): T {
  if (value === undefined || value === '') throw invalidArgument(field, 'is required');
  return value;
}

function pick(b: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (b[k] !== undefined) out[k] = b[k];
  return out;
}

/** parseVolumeOptions names fields "body.<key>"; the REST API's fields are the bare keys. */
function withBareFields<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BerthError && err.field?.startsWith('body.')) {
      const field = err.field.slice('body.'.length);
      throw new BerthError(err.kind, err.message.replace(/^body\./, ''), { field, cause: err });
    }
    throw err;
  }
}

const NDJSON = 'application/x-ndjson';

/** `?progress=true` or an Accept header that names NDJSON asks for a streamed create. */
function wantsProgress(c: Context<Env>): boolean {
  return boolQuery(c.req.query('progress'), 'progress') || (c.req.header('accept') ?? '').includes(NDJSON);
}

function boolQuery(value: string | undefined, field: string): boolean {
  if (value === undefined || value === '' || value === 'false' || value === '0') return false;
  if (value === 'true' || value === '1') return true;
  throw invalidArgument(field, `"${value}" must be true or false`);
}
