/**
 * The Docker volume plugin protocol as a Hono app: /Plugin.Activate and the
 * /VolumeDriver.* methods. Each handler parses the raw body (Docker sends no
 * Content-Type), makes one VolumeService call and renders the reply; errors become
 * {"Err"} in frontends/docker/errors.ts. One log line per call from `handle`.
 *
 * @example
 *   const app = createDockerApp({ service, log });
 *   await app.request('/VolumeDriver.Get', { method: 'POST', body: '{"Name":"v"}\n' });
 */
import { Hono, type Context } from 'hono';
import {
  clip, invalidArgument, isBerthError, notFound, truncate, unsupported, type Logger, type OpContext, type VolumeService,
} from '../../core/index.js';
import { limitBody, MAX_BODY_TEXT } from '../body-limit.js';
import { toDockerError } from './errors.js';
import {
  consumerFor, createError, createRequest, dockerVolume, listEntry, parseBody, scopeOf, volumeName, type DockerBody,
} from './translate.js';

/** Docker accepts v1+json too; v1.2 is what current engines advertise. */
export const DOCKER_PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

const DOCKER: OpContext = { frontend: 'docker' };

/** How much of an error the op line keeps (errors embed names the caller sent). */
const LOGGED_ERR_CHARS = 512;

/** Calls Docker makes constantly, also for names it has not met yet: their NotFound is no warning. */
const QUIET = new Set(['Plugin.Activate', 'VolumeDriver.Capabilities', 'VolumeDriver.Get', 'VolumeDriver.List', 'VolumeDriver.Path']);

type Handler = (body: DockerBody) => Promise<Record<string, unknown>> | Record<string, unknown>;

/** @example const app = createDockerApp({ service, log }); serve({ fetch: app.fetch }) */
export function createDockerApp(o: { service: VolumeService; log: Logger }): Hono {
  const { service } = o;
  const log = o.log.child({ frontend: 'docker' });
  const app = new Hono();

  /** Runs one protocol method: parse, call, reply, log once. */
  const handle = (method: string, fn: Handler) => async (c: Context) => {
    const started = performance.now();
    let volume: unknown;
    let reply: Record<string, unknown>;
    let errKind: string | undefined;
    try {
      const body = parseBody(await c.req.text());
      volume = body.Name;
      reply = await fn(body);
    } catch (err) {
      errKind = isBerthError(err) ? err.kind : 'Internal';
      reply = toDockerError(err, log);
    }
    const fields = {
      op: method,
      volume: typeof volume === 'string' ? clip(volume) : undefined,
      ms: Math.round((performance.now() - started) * 100) / 100,
      outcome: errKind === undefined ? 'ok' : 'error',
      ...(errKind ? { kind: errKind, err: truncate(String(reply.Err), LOGGED_ERR_CHARS) } : {}),
    };
    // The core writes the info line of every operation (volume, frontend, op, duration,
    // outcome); this protocol-level line adds the Docker method and is debug unless it
    // failed. Docker asks every plugin's Get for a name it does not know yet (docker run -v
    // x:/d, docker volume inspect x): NotFound there is an everyday answer, not a warning.
    if (errKind && !(errKind === 'NotFound' && QUIET.has(method))) log.warn(fields, 'docker op failed');
    else log.debug(fields, 'docker op');
    // An error is HTTP 500 with {"Err"}, as in Docker's reference plugin: Docker reads Err
    // either way, but Podman reads a body only when the status is not 200, so a refused
    // Create answered with 200 would leave Podman holding a volume berth never made.
    return c.body(JSON.stringify(reply), errKind === undefined ? 200 : 500, { 'Content-Type': DOCKER_PLUGIN_CONTENT_TYPE });
  };

  // Docker shows Err to the user; any status with an {"Err"} body is an error to it.
  app.use('*', limitBody((c, limit) => {
    const err = invalidArgument('body', `is larger than ${MAX_BODY_TEXT} (${limit} bytes); no plugin call needs that much`);
    log.warn({ op: clip(c.req.path.slice(1)), outcome: 'error', kind: err.kind }, 'docker request body too large');
    return c.body(JSON.stringify(toDockerError(err)), 413, { 'Content-Type': DOCKER_PLUGIN_CONTENT_TYPE });
  }));

  app.post('/Plugin.Activate', handle('Plugin.Activate', () => ({ Implements: ['VolumeDriver'] })));

  app.post('/VolumeDriver.Capabilities', handle('VolumeDriver.Capabilities', () => ({
    Capabilities: { Scope: scopeOf(service.status().cluster) },
  })));

  app.post('/VolumeDriver.Create', handle('VolumeDriver.Create', async (body) => {
    const req = createRequest(body);
    await service.create(req, DOCKER).catch((err: unknown) => {
      throw createError(err, body);
    });
    return { Err: '' };
  }));

  app.post('/VolumeDriver.Remove', handle('VolumeDriver.Remove', async (body) => {
    try {
      await service.remove({ ref: volumeName(body) }, DOCKER);
    } catch (err) {
      // Docker still lists a volume berth no longer has (e.g. removed through another
      // frontend); its removal is then already done, and failing would leave Docker stuck.
      if (!(isBerthError(err) && err.kind === 'NotFound')) throw err;
    }
    return { Err: '' };
  }));

  app.post('/VolumeDriver.Get', handle('VolumeDriver.Get', async (body) => {
    const name = volumeName(body);
    // Another node may have made it a moment ago: a miss catches up with the catalog first.
    const v = await service.findFresh(name);
    if (v === null) throw notFound(`volume ${clip(name)} not found`);
    return { Volume: dockerVolume(v), Err: '' };
  }));

  app.post('/VolumeDriver.List', handle('VolumeDriver.List', async () => {
    const volumes = await service.list({}, DOCKER);
    return { Volumes: volumes.map(listEntry), Err: '' };
  }));

  app.post('/VolumeDriver.Path', handle('VolumeDriver.Path', async (body) => {
    const path = await service.path(volumeName(body), DOCKER);
    return { Mountpoint: path ?? '', Err: '' };
  }));

  app.post('/VolumeDriver.Mount', handle('VolumeDriver.Mount', async (body) => {
    const name = volumeName(body);
    const { consumer, frontend } = consumerFor(body);
    const existing = service.find(name);
    if (existing?.volumeMode === 'block') {
      throw unsupported(`volume ${clip(name)} is a block volume; Docker can only mount filesystem volumes`);
    }
    const res = await service.mount({ ref: name, consumer }, { frontend });
    return { Mountpoint: res.path, Err: '' };
  }));

  app.post('/VolumeDriver.Unmount', handle('VolumeDriver.Unmount', async (body) => {
    const name = volumeName(body);
    const { consumer, frontend } = consumerFor(body);
    try {
      await service.unmount({ ref: name, consumer }, { frontend });
    } catch (err) {
      // A container exiting after its volume was force-removed: nothing is left to release.
      if (!(isBerthError(err) && err.kind === 'NotFound')) throw err;
    }
    return { Err: '' };
  }));

  app.notFound((c) =>
    c.body(JSON.stringify(toDockerError(unsupported(`berth does not implement ${c.req.method} ${c.req.path}`))), 404, {
      'Content-Type': DOCKER_PLUGIN_CONTENT_TYPE,
    }));

  app.onError((err, c) =>
    c.body(JSON.stringify(toDockerError(err, log)), 500, { 'Content-Type': DOCKER_PLUGIN_CONTENT_TYPE }));

  return app;
}
