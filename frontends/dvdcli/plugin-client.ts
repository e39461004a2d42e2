/**
 * A client of the legacy Docker volume plugin protocol, as dvdcli 0.2 speaks it
 * (dvdcli-mesos.md §2): find the plugin by name (a unix socket under /run/docker/plugins,
 * or a .spec / .json file under /etc/docker/plugins or /usr/lib/docker/plugins), activate
 * it, then POST /VolumeDriver.* with a JSON body. It works with any Docker volume driver,
 * berth's included, and needs no Docker daemon. Speaks HTTP/1.1 through ../http1-client.ts
 * (node:net; node:tls only for a TLS .json spec), not node:http: Mesos starts it per call.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BlockingSockets } from '../blocking-socket.js';
import { http1Request, type Http1Target } from '../http1-client.js';

export const SOCKET_DIRS = ['/run/docker/plugins'] as const;
export const SPEC_DIRS = ['/etc/docker/plugins', '/usr/lib/docker/plugins'] as const;

export interface TlsFiles {
  readonly insecureSkipVerify: boolean;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export type PluginEndpoint =
  | { readonly kind: 'unix'; readonly socketPath: string; readonly source: string }
  | { readonly kind: 'tcp'; readonly url: URL; readonly tls: TlsFiles | null; readonly source: string };

/** A plugin call failed; `message` is what dvdcli prints (the plugin's Err, or "<Method>: <body>"). */
export class PluginCallError extends Error {
  constructor(message: string, readonly method: string) {
    super(message);
    this.name = 'PluginCallError';
  }
}

/** The plugin could not be found or reached within the wait budget. */
export class PluginUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginUnavailableError';
  }
}

export interface DiscoveryDirs {
  readonly socketDirs: readonly string[];
  readonly specDirs: readonly string[];
}

const isSocket = (p: string) => {
  try {
    return statSync(p).isSocket(); // follows symlinks, like Docker's os.Stat
  } catch {
    return false;
  }
};

const readIfFile = (p: string): string | null => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
};

function parseSpecUrl(text: string, source: string): PluginEndpoint {
  const raw = text.trim();
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PluginUnavailableError(`Unknown protocol in plugin spec ${source}: ${JSON.stringify(raw)}`);
  }
  if (url.protocol === 'unix:') return { kind: 'unix', socketPath: url.pathname, source };
  if (url.protocol === 'tcp:' || url.protocol === 'http:') return { kind: 'tcp', url: new URL(`http://${url.host}`), tls: null, source };
  throw new PluginUnavailableError(`Unknown protocol in plugin spec ${source}: ${url.protocol}`);
}

function parseJsonSpec(text: string, source: string): PluginEndpoint {
  let spec: { Addr?: unknown; TLSConfig?: Record<string, unknown> | null };
  try {
    spec = JSON.parse(text) as typeof spec;
  } catch (err) {
    throw new PluginUnavailableError(`invalid plugin spec ${source}: ${(err as Error).message}`);
  }
  if (typeof spec.Addr !== 'string') throw new PluginUnavailableError(`invalid plugin spec ${source}: Addr missing`);
  let addr: URL;
  try {
    addr = new URL(spec.Addr);
  } catch {
    throw new PluginUnavailableError(`invalid plugin spec ${source}: Addr ${JSON.stringify(spec.Addr)} is not a URL`);
  }
  if (addr.protocol === 'unix:') return { kind: 'unix', socketPath: addr.pathname, source };
  const t = spec.TLSConfig ?? null;
  const str = (k: string) => (t && typeof t[k] === 'string' ? (t[k] as string) : '');
  // Docker: https means TLS; an empty CAFile means the server certificate is not verified.
  const tls: TlsFiles | null =
    addr.protocol === 'https:'
      ? { insecureSkipVerify: str('CAFile') === '' || t?.InsecureSkipVerify === true, caFile: str('CAFile'), certFile: str('CertFile'), keyFile: str('KeyFile') }
      : null;
  return { kind: 'tcp', url: new URL(`${tls ? 'https' : 'http'}://${addr.host}`), tls, source };
}

/**
 * Where plugin `name` listens, in Docker's order (first hit wins): N.sock, N/N.sock under
 * the socket dirs, then N.spec, N/N.spec, N.json, N/N.json under each spec dir. null when absent.
 */
export function locatePlugin(name: string, dirs: DiscoveryDirs = { socketDirs: SOCKET_DIRS, specDirs: SPEC_DIRS }): PluginEndpoint | null {
  if (name === '' || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new PluginUnavailableError(`invalid volume driver name ${JSON.stringify(name)}`);
  }
  for (const dir of dirs.socketDirs) {
    for (const p of [join(dir, `${name}.sock`), join(dir, name, `${name}.sock`)]) {
      if (isSocket(p)) return { kind: 'unix', socketPath: p, source: p };
    }
  }
  for (const dir of dirs.specDirs) {
    for (const p of [join(dir, `${name}.spec`), join(dir, name, `${name}.spec`)]) {
      const text = readIfFile(p);
      if (text !== null) return parseSpecUrl(text, p);
    }
    for (const p of [join(dir, `${name}.json`), join(dir, name, `${name}.json`)]) {
      const text = readIfFile(p);
      if (text !== null) return parseJsonSpec(text, p);
    }
  }
  return null;
}

const CONNECT_ERRORS = new Set(['ENOENT', 'ECONNREFUSED']);

/**
 * How long a plugin may stay silent on one call before it fails, as Docker's volume driver
 * proxy allows: 2 minutes for Create and Mount (they may make a filesystem), 1 minute for
 * the rest. Without a limit a plugin that accepts and never answers hangs the Mesos task.
 */
export const CALL_TIMEOUTS_MS = { long: 120_000, short: 60_000 } as const;
const LONG_CALLS = ['VolumeDriver.Create', 'VolumeDriver.Mount'];

export interface PluginClientOptions {
  readonly name: string;
  /** Total seconds to keep retrying discovery and refused connections (dvdcli: ~15). */
  readonly waitSeconds: number;
  /** Gets dvdcli's "retrying" warnings. */
  readonly warn: (message: string) => void;
  readonly dirs?: DiscoveryDirs;
  /** Per-call silence limits; default CALL_TIMEOUTS_MS. */
  readonly timeouts?: { readonly long: number; readonly short: number };
  /**
   * A read-only call (VolumeDriver.Get) the command makes first: sent once beside
   * Plugin.Activate instead of after its reply, and answered from that when the command makes
   * it. It is never retried: if its connection fails (the plugin is not up yet), the command's
   * own call retries after the activation, with the usual warnings.
   */
  readonly prefetch?: { readonly method: string; readonly body: unknown };
  /** Blocking unix-socket calls (blocking-socket.ts); without them, node:net. */
  readonly sockets?: BlockingSockets | null;
}

export interface PluginClient {
  readonly endpoint: PluginEndpoint;
  /** POST /<method>; resolves the decoded reply, rejects PluginCallError on Err or non-200. */
  call<T>(method: string, body?: unknown): Promise<T>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Docker's back-off: 1, 2, 4, 8 s... as long as the next sleep stays within the budget. */
async function withRetry<T>(budgetSeconds: number, attempt: () => Promise<T | null>, onRetry: (seconds: number) => void): Promise<T | null> {
  let spent = 0;
  for (let delay = 1; ; delay *= 2) {
    const result = await attempt();
    if (result !== null) return result;
    if (spent + delay > budgetSeconds) return null;
    onRetry(delay);
    await sleep(delay * 1000);
    spent += delay;
  }
}

async function send(endpoint: PluginEndpoint, method: string, payload: string, timeoutMs: number, sockets: BlockingSockets | null): Promise<{ status: number; text: string }> {
  let target: Http1Target;
  if (endpoint.kind === 'unix') target = { socketPath: endpoint.socketPath, sockets };
  else {
    // URL keeps IPv6 literals in brackets ("[::1]"); the socket wants the bare address.
    const host = endpoint.url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(endpoint.url.port || (endpoint.tls ? 443 : 80));
    const t = endpoint.tls;
    target = t
      ? {
          host,
          port,
          tls: {
            rejectUnauthorized: !t.insecureSkipVerify,
            // SNI and the certificate's name check use the host name, as node:https would.
            ...(/^[\d.]+$/.test(host) || host.includes(':') ? {} : { servername: host }),
            ...(t.caFile ? { ca: readFileSync(t.caFile) } : {}),
            ...(t.certFile ? { cert: readFileSync(t.certFile) } : {}),
            ...(t.keyFile ? { key: readFileSync(t.keyFile) } : {}),
          },
        }
      : { host, port };
  }
  const res = await http1Request(target, {
    method: 'POST',
    path: `/${method}`,
    headers: { accept: 'application/vnd.docker.plugins.v1.2+json' },
    body: payload,
    timeoutMs,
    onTimeout: () => new PluginCallError(`${method}: the plugin did not answer within ${Math.round(timeoutMs / 1000)}s`, method),
  });
  return { status: res.status, text: await res.text() };
}

function decode<T>(method: string, status: number, text: string): T {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const err = body && typeof body === 'object' ? (body as { Err?: unknown }).Err : undefined;
  if (status !== 200) throw new PluginCallError(`${method}: ${typeof err === 'string' && err !== '' ? err : text.trim()}`, method);
  if (body === undefined) throw new PluginCallError(`${method}: invalid JSON reply: ${text.trim().slice(0, 200)}`, method);
  if (typeof err === 'string' && err !== '') throw new PluginCallError(err, method);
  return body as T;
}

/**
 * Finds plugin `name`, activates it and returns a client for its VolumeDriver methods.
 * @example const plugin = await connectPlugin({ name: 'berth', waitSeconds: 15, warn: console.error });
 */
export async function connectPlugin(o: PluginClientOptions): Promise<PluginClient> {
  const endpoint = await withRetry(o.waitSeconds, async () => locatePlugin(o.name, o.dirs), (s) =>
    o.warn(`Unable to locate plugin: ${o.name}, retrying in ${s}s`),
  );
  if (endpoint === null) throw new PluginUnavailableError(`Error looking up volume plugin ${o.name}: plugin not found`);
  const where = endpoint.kind === 'unix' ? `unix://${endpoint.socketPath}` : endpoint.url.origin;
  const timeouts = o.timeouts ?? CALL_TIMEOUTS_MS;

  // Like Docker's json.Encoder: compact JSON plus a newline; Activate has no body.
  const encode = (body: unknown) => (body === undefined ? '' : `${JSON.stringify(body)}\n`);
  const timeoutOf = (method: string) => (LONG_CALLS.includes(method) ? timeouts.long : timeouts.short);
  let prefetched: { method: string; payload: string; reply: Promise<{ status: number; text: string } | null> } | null = null;
  if (o.prefetch) {
    const { method } = o.prefetch;
    const payload = encode(o.prefetch.body);
    const reply = send(endpoint, method, payload, timeoutOf(method), o.sockets ?? null).catch((err: NodeJS.ErrnoException) => {
      if (CONNECT_ERRORS.has(err.code ?? '')) return null;
      throw err;
    });
    reply.catch(() => undefined); // read by the command's call, or dropped with a failed activation
    prefetched = { method, payload, reply };
  }

  const call = async <T>(method: string, body?: unknown): Promise<T> => {
    const payload = encode(body);
    if (prefetched && prefetched.method === method && prefetched.payload === payload) {
      const early = await prefetched.reply;
      prefetched = null;
      if (early !== null) return decode<T>(method, early.status, early.text);
    }
    let lastErr: unknown = null;
    const reply = await withRetry(
      o.waitSeconds,
      async () => {
        try {
          return await send(endpoint, method, payload, timeoutOf(method), o.sockets ?? null);
        } catch (err) {
          // Only errors before the request reached the plugin are safe to retry.
          if (!CONNECT_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
          lastErr = err;
          return null;
        }
      },
      (s) => o.warn(`Unable to connect to plugin: ${where}/${method}, retrying in ${s}s`),
    );
    if (reply === null) {
      throw new PluginUnavailableError(`cannot connect to volume plugin ${o.name} at ${where} (${(lastErr as NodeJS.ErrnoException).code})`);
    }
    return decode<T>(method, reply.status, reply.text);
  };

  const activation = await call<{ Implements?: unknown }>('Plugin.Activate');
  if (!Array.isArray(activation.Implements) || !activation.Implements.includes('VolumeDriver')) {
    throw new PluginUnavailableError(`Error looking up volume plugin ${o.name}: Plugin does not implement the requested driver`);
  }
  return { endpoint, call };
}
