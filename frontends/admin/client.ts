/**
 * Typed client of the admin REST API, one method per route, over the unix socket (or a
 * TCP URL with a bearer token). Error bodies become the daemon's BerthError again.
 * Used by the `berth` CLI and by the FlexVolume executable, which start a process per call,
 * so it loads only the small HTTP/1.1 client (../http1-client.ts, on node:net) and
 * core/errors.ts (through ./errors.ts); everything else is type-only.
 */
import { BerthError } from '../../core/errors.js';
import type { BlockingSockets } from '../blocking-socket.js';
import { http1Request, type Http1Response, type Http1Target } from '../http1-client.js';
import { fromErrorResponse } from './errors.js';
import type { ExpandResponse, ServiceStatus } from '../../core/service.js';
import type {
  AccessMode, BackendInfo, Capacity, FenceRecord, Frontend, Snapshot, Volume, VolumeMode, VolumeStats, NodeStatus,
} from '../../core/types.js';

export const DEFAULT_ADMIN_SOCKET = '/run/berth/berth.sock';

const NDJSON = 'application/x-ndjson';

/** Copied and total bytes of a long copy, as the daemon streams them. */
export type Progress = (doneBytes: number, totalBytes: number) => void;

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
  /** The per-call executables' blocking socket calls (blocking-socket.ts); default node:net. */
  readonly sockets?: BlockingSockets | null;
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
  /** Cluster mode: a mount on another node takes the volume from its holder at once. */
  readonly preempt?: boolean;
}

export interface MountBody {
  readonly consumer: string;
  readonly target?: string;
  readonly readOnly?: boolean;
  readonly mountFlags?: readonly string[];
  /** Cluster mode: take the volume from the node holding it (its copy is shut down first). */
  readonly preempt?: boolean;
  /** Refuse (InvalidArgument, field fsType) a volume with another filesystem, before anything is done. */
  readonly fsType?: string;
}

/** Where a running daemon listens and keeps its state: what an operator asks `berth status`. */
export interface DaemonInfo {
  readonly pid: number;
  readonly stateRoot: string;
  /** The config file read at start, or null for the embedded defaults. */
  readonly configFile: string | null;
  readonly adminSocket: string;
  readonly adminTcp: string | null;
  /**
   * The Docker volume plugin socket and driver name, or null when docker.enabled is false;
   * `tcp` is the URL its spec file gives Docker (docker.tcp), null without one.
   */
  readonly docker: { readonly driverName: string; readonly socket: string; readonly tcp: string | null } | null;
  /** The CSI endpoint, driver name and mode, or null when csi.enabled is false. */
  readonly csi: { readonly driverName: string; readonly endpoint: string; readonly mode: string } | null;
  readonly logLevel: string;
}

/** GET /v1/status: the core's status plus, from a daemon, where it listens. */
export type StatusResponse = ServiceStatus & { readonly daemon?: DaemonInfo };

export interface AdminClient {
  listVolumes(filter?: { backend?: string; labels?: Readonly<Record<string, string>> }): Promise<Volume[]>;
  /**
   * With `onProgress`, the daemon streams the progress of a restore or clone (NDJSON) and
   * the callback sees copied/total bytes as they come; without it, one plain JSON reply.
   */
  createVolume(body: CreateVolumeBody, opts?: { onProgress?: Progress }): Promise<Volume>;
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
  /** With `onProgress`, streamed as createVolume is (a loop or dir snapshot is a copy). */
  createSnapshot(body: { name: string; volume: string }, opts?: { onProgress?: Progress }): Promise<Snapshot>;
  inspectSnapshot(ref: string): Promise<Snapshot>;
  deleteSnapshot(ref: string): Promise<void>;
  backends(): Promise<BackendInfo[]>;
  /** Every node of the cluster (single node: this one), with its lease and what it holds. */
  nodes(): Promise<NodeStatus[]>;
  /** Fences a node (cluster mode) and returns the fence once acknowledged. */
  fenceNode(node: string): Promise<FenceRecord>;
  unfenceNode(node: string): Promise<void>;
  /** Releases the volume on the node that holds it and gives it to `to` (cluster mode). */
  moveVolume(ref: string, to: string): Promise<Volume>;
  capacity(backend?: string): Promise<Capacity[]>;
  status(): Promise<StatusResponse>;
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

  /**
   * Sends one request. The reply is read whole, unless `onLine` is given and the daemon
   * answers NDJSON: then each line goes to `onLine` as it arrives, and `onLine` returns the
   * result when it sees the last one.
   */
  function call<T>(method: string, path: string, body?: unknown, raw = false, onLine?: (line: unknown) => { result: T } | void): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: onLine ? `${NDJSON}, application/json` : 'application/json' };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.frontend) headers['x-berth-frontend'] = o.frontend;
    const target: Http1Target = base ? { host: base.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(base.port || 80) } : { socketPath: socket, sockets: o.sockets ?? null };
    const request = http1Request(target, {
      method,
      path,
      headers,
      ...(payload !== undefined ? { body: payload } : {}),
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs, onTimeout: () => new BerthError('Internal', `admin API call ${method} ${path} timed out after ${o.timeoutMs} ms`) } : {}),
    });
    const unreachable = (err: NodeJS.ErrnoException): never => {
      if (err instanceof BerthError) throw err;
      const hint = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? ': is the daemon running (berth serve)?' : '';
      throw new BerthError('FailedPrecondition', `cannot reach the berth daemon at ${where} (${err.code ?? err.message})${hint}`, { cause: err });
    };
    // The daemon answered, then the reply broke off (it died, or the timeout hit mid-body).
    const broken = (err: Error): never => {
      if (err instanceof BerthError) throw err;
      throw new BerthError('Internal', `the admin API reply to ${method} ${path} broke off: ${err.message}`, { cause: err });
    };
    return request.then(async (res) => {
      const ok = res.status >= 200 && res.status < 300;
      if (onLine && ok && (res.headers['content-type'] ?? '').startsWith(NDJSON)) return readLines(res, method, path, onLine).catch(broken);
      const text = await res.text().catch(broken);
      if (ok) {
        if (raw) return text as T;
        if (text === '') return undefined as T;
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new BerthError('Internal', `admin API answered ${method} ${path} with invalid JSON`);
        }
      }
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not ours: fromErrorResponse falls back on the status */
      }
      throw fromErrorResponse(res.status, parsed);
    }, unreachable);
  }

  /** A streamed create: progress lines to the caller, then the result under `key` or the daemon's error. */
  function streamed<T>(path: string, key: 'volume' | 'snapshot', body: unknown, onProgress: Progress): Promise<T> {
    return call<T>('POST', `${path}?progress=true`, body, false, (line) => {
      const l = line as { progress?: { doneBytes?: unknown; totalBytes?: unknown }; error?: unknown } & Record<string, unknown>;
      if (l.progress) {
        const { doneBytes, totalBytes } = l.progress;
        if (typeof doneBytes === 'number' && typeof totalBytes === 'number') onProgress(doneBytes, totalBytes);
        return;
      }
      if (l[key]) return { result: l[key] as T };
      if (l.error) throw fromErrorResponse(500, l);
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
    createVolume: (body, opts = {}) => (opts.onProgress ? streamed('/v1/volumes', 'volume', body, opts.onProgress) : call('POST', '/v1/volumes', body)),
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
    createSnapshot: (body, opts = {}) => (opts.onProgress ? streamed('/v1/snapshots', 'snapshot', body, opts.onProgress) : call('POST', '/v1/snapshots', body)),
    inspectSnapshot: (ref) => call('GET', `/v1/snapshots/${encodeURIComponent(ref)}`),
    deleteSnapshot: (ref) => call('DELETE', `/v1/snapshots/${encodeURIComponent(ref)}`),
    backends: () => call('GET', '/v1/backends'),
    nodes: () => call('GET', '/v1/nodes'),
    fenceNode: (node) => call('POST', `/v1/nodes/${encodeURIComponent(node)}/fence`),
    unfenceNode: (node) => call('POST', `/v1/nodes/${encodeURIComponent(node)}/unfence`),
    moveVolume: (ref, to) => call('POST', `${v(ref)}/move`, { to }),
    capacity: (backend) => call('GET', `/v1/capacity${qs(backend ? [['backend', backend]] : [])}`),
    status: () => call('GET', '/v1/status'),
    version: () => call('GET', '/v1/version'),
    metrics: () => call('GET', '/metrics', undefined, true),
  };
}

/**
 * Reads an NDJSON reply line by line into `onLine` until it returns a result. A reply that
 * ends without one (the daemon died mid-copy) is an Internal error, not a hang.
 */
function readLines<T>(res: Http1Response, method: string, path: string, onLine: (line: unknown) => { result: T } | void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let buffered = '';
    let settled = false;
    const decoder = new TextDecoder();
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      res.close();
    };
    const take = (text: string) => {
      if (text.trim() === '') return;
      let line: unknown;
      try {
        line = JSON.parse(text);
      } catch {
        return settle(() => reject(new BerthError('Internal', `admin API answered ${method} ${path} with an invalid NDJSON line`)));
      }
      try {
        const r = onLine(line);
        if (r) settle(() => resolve(r.result));
      } catch (err) {
        settle(() => reject(err));
      }
    };
    res.read({
      data(chunk) {
        buffered += decoder.decode(chunk, { stream: true });
        let nl: number;
        while (!settled && (nl = buffered.indexOf('\n')) >= 0) {
          take(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
        }
      },
      end() {
        if (!settled) take(buffered + decoder.decode());
        settle(() => reject(new BerthError('Internal', `admin API stream of ${method} ${path} ended before its result`)));
      },
      error: (err) => settle(() => reject(err)),
    });
  });
}
