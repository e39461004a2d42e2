/**
 * Typed client of the admin REST API, one method per route, over the unix socket (or a
 * TCP URL with a bearer token). Error bodies become the daemon's BerthError again.
 * Used by the `berth` CLI and by the FlexVolume executable, so it loads only node:http
 * and core/errors.ts (through ./errors.ts); everything else is type-only.
 */
import { request } from 'node:http';
import { BerthError } from '../../core/errors.js';
import { fromErrorResponse } from './errors.js';
import type { ExpandResponse, ServiceStatus } from '../../core/service.js';
import type {
  AccessMode, BackendInfo, Capacity, Frontend, Snapshot, Volume, VolumeMode, VolumeStats,
} from '../../core/types.js';

export const DEFAULT_ADMIN_SOCKET = '/run/berth/berth.sock';

export interface AdminClientOptions {
  /** Unix socket path; default $BERTH_SOCKET or /run/berth/berth.sock (ignored when url is set). */
  readonly socket?: string;
  /** "http://host:port" of the TCP listener instead of the socket. */
  readonly url?: string;
  readonly token?: string;
  /** Sent as X-Berth-Frontend so logs and metrics name the real caller. */
  readonly frontend?: Extract<Frontend, 'admin' | 'flexvolume' | 'dvdcli'>;
  /** Per-request deadline; default none (mkfs on a first mount can take a while). */
  readonly timeoutMs?: number;
}

/** POST /v1/volumes body. */
export interface CreateVolumeBody {
  readonly name: string;
  /** "512MiB", "10G" or bytes. */
  readonly size?: string | number;
  readonly fs?: string;
  readonly backend?: string;
  readonly mode?: VolumeMode;
  readonly accessMode?: AccessMode;
  readonly labels?: Readonly<Record<string, string>>;
  readonly options?: Readonly<Record<string, string>>;
  readonly fromSnapshot?: string;
  readonly fromVolume?: string;
}

export interface MountBody {
  readonly consumer: string;
  readonly target?: string;
  readonly readOnly?: boolean;
  readonly mountFlags?: readonly string[];
}

export interface AdminClient {
  listVolumes(filter?: { backend?: string; labels?: Readonly<Record<string, string>> }): Promise<Volume[]>;
  createVolume(body: CreateVolumeBody): Promise<Volume>;
  inspectVolume(ref: string): Promise<Volume>;
  removeVolume(ref: string, opts?: { force?: boolean }): Promise<void>;
  attach(ref: string, body?: { node?: string; readOnly?: boolean }): Promise<Volume>;
  detach(ref: string, body?: { node?: string }): Promise<Volume>;
  mount(ref: string, body: MountBody): Promise<{ path: string; volume: Volume; existing: boolean }>;
  unmount(ref: string, body: { consumer: string }): Promise<Volume>;
  path(ref: string): Promise<string | null>;
  expand(ref: string, size: string | number): Promise<ExpandResponse>;
  stats(ref: string): Promise<VolumeStats>;
  listSnapshots(filter?: { volume?: string }): Promise<Snapshot[]>;
  createSnapshot(body: { name: string; volume: string }): Promise<Snapshot>;
  inspectSnapshot(ref: string): Promise<Snapshot>;
  deleteSnapshot(ref: string): Promise<void>;
  backends(): Promise<BackendInfo[]>;
  capacity(backend?: string): Promise<Capacity[]>;
  status(): Promise<ServiceStatus>;
  version(): Promise<{ version: string; nodeId: string }>;
  /** Prometheus text. */
  metrics(): Promise<string>;
}

/**
 * Builds a client; no connection is made until the first call.
 * @example const client = createAdminClient({ socket: '/run/berth/berth.sock' }); await client.status();
 */
export function createAdminClient(o: AdminClientOptions = {}): AdminClient {
  const socket = o.socket ?? process.env.BERTH_SOCKET ?? DEFAULT_ADMIN_SOCKET;
  const base = o.url ? new URL(o.url) : null;
  const where = base ? base.origin : socket;

  function call<T>(method: string, path: string, body?: unknown, raw = false): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.frontend) headers['x-berth-frontend'] = o.frontend;
    return new Promise<T>((resolve, reject) => {
      const req = request(
        base
          ? { host: base.hostname, port: base.port || 80, path, method, headers }
          : { socketPath: socket, path, method, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              if (raw) return resolve(text as T);
              if (text === '') return resolve(undefined as T);
              try {
                resolve(JSON.parse(text) as T);
              } catch {
                reject(new BerthError('Internal', `admin API answered ${method} ${path} with invalid JSON`));
              }
              return;
            }
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* not ours: fromErrorResponse falls back on the status */
            }
            reject(fromErrorResponse(status, parsed));
          });
        },
      );
      if (o.timeoutMs) {
        req.setTimeout(o.timeoutMs, () => req.destroy(new BerthError('Internal', `admin API call ${method} ${path} timed out after ${o.timeoutMs} ms`)));
      }
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof BerthError) return reject(err);
        const hint = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? ': is the daemon running (berth serve)?' : '';
        reject(new BerthError('FailedPrecondition', `cannot reach the berth daemon at ${where} (${err.code ?? err.message})${hint}`, { cause: err }));
      });
      req.end(payload);
    });
  }

  const v = (ref: string) => `/v1/volumes/${encodeURIComponent(ref)}`;
  const qs = (pairs: Array<[string, string]>) =>
    pairs.length ? `?${pairs.map(([k, val]) => `${encodeURIComponent(k)}=${encodeURIComponent(val)}`).join('&')}` : '';

  return {
    listVolumes: (f = {}) =>
      call('GET', `/v1/volumes${qs([
        ...(f.backend ? ([['backend', f.backend]] as Array<[string, string]>) : []),
        ...Object.entries(f.labels ?? {}).map(([k, val]): [string, string] => ['label', `${k}=${val}`]),
      ])}`),
    createVolume: (body) => call('POST', '/v1/volumes', body),
    inspectVolume: (ref) => call('GET', v(ref)),
    removeVolume: (ref, opts = {}) => call('DELETE', `${v(ref)}${opts.force ? '?force=true' : ''}`),
    attach: (ref, body = {}) => call('POST', `${v(ref)}/attach`, body),
    detach: (ref, body = {}) => call('POST', `${v(ref)}/detach`, body),
    mount: (ref, body) => call('POST', `${v(ref)}/mount`, body),
    unmount: (ref, body) => call('POST', `${v(ref)}/unmount`, body),
    path: async (ref) => (await call<{ path: string | null }>('GET', `${v(ref)}/path`)).path,
    expand: (ref, size) => call('POST', `${v(ref)}/expand`, { size }),
    stats: (ref) => call('GET', `${v(ref)}/stats`),
    listSnapshots: (f = {}) => call('GET', `/v1/snapshots${qs(f.volume ? [['volume', f.volume]] : [])}`),
    createSnapshot: (body) => call('POST', '/v1/snapshots', body),
    inspectSnapshot: (ref) => call('GET', `/v1/snapshots/${encodeURIComponent(ref)}`),
    deleteSnapshot: (ref) => call('DELETE', `/v1/snapshots/${encodeURIComponent(ref)}`),
    backends: () => call('GET', '/v1/backends'),
    capacity: (backend) => call('GET', `/v1/capacity${qs(backend ? [['backend', backend]] : [])}`),
    status: () => call('GET', '/v1/status'),
    version: () => call('GET', '/v1/version'),
    metrics: () => call('GET', '/metrics', undefined, true),
  };
}
