// Raw HTTP over a unix socket or TCP for the admin API tests: status, headers and the exact
// body, so error bodies can be asserted as they are on the wire (the client hides them).
import { Agent, request } from 'node:http';

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: unknown;
}

export function raw(
  target: { socket: string } | { host: string; port: number },
  method: string,
  path: string,
  body?: string | object,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { ...('socket' in target ? { socketPath: target.socket } : target), method, path, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {
            json = null;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export interface StreamedPost {
  /** The answer's status, or null when the connection closed without one. */
  readonly status: number | null;
  readonly text: string;
  /** Body bytes handed to the socket before the server closed the connection. */
  readonly sentBytes: number;
  /** From the first byte sent until the connection was closed. */
  readonly ms: number;
}

/**
 * POSTs `totalBytes` of filler without ever holding them: one 64 KiB buffer is written again
 * and again as the socket drains, chunked unless `contentLength` (then the header announces
 * the whole size up front). Resolves when the connection has closed, with or without an
 * answer; rejects when it is still open after `timeoutMs` (a server that neither answers
 * nor closes, which is the hang this is for).
 * @example const r = await streamPost({ socket }, '/v1/volumes', { totalBytes: 300e6, contentLength: false });
 */
export function streamPost(
  target: { socket: string } | { host: string; port: number },
  path: string,
  o: { totalBytes: number; contentLength: boolean; headers?: Record<string, string>; timeoutMs?: number },
): Promise<StreamedPost> {
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  const headers = { ...(o.contentLength ? { 'content-length': String(o.totalBytes) } : { 'transfer-encoding': 'chunked' }), ...o.headers };
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // Keep-alive, as Docker's and most clients are: a client that asks for Connection: close
    // gets the connection closed right after the answer, and its next write (EPIPE) can
    // beat reading the answer.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const req = request({ ...('socket' in target ? { socketPath: target.socket } : target), method: 'POST', path, headers, agent });
    let status: number | null = null;
    let text = '';
    let sent = 0;
    let closed = false;
    const timer = setTimeout(() => {
      req.destroy();
      agent.destroy();
      reject(new Error(`connection still open after ${o.timeoutMs ?? 30_000} ms (${sent} bytes sent, status ${status})`));
    }, o.timeoutMs ?? 30_000);
    req.on('response', (res) => {
      status = res.statusCode ?? null;
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('error', () => undefined);
    });
    // EPIPE / ECONNRESET once the server closes while we still write: expected here.
    req.on('error', () => undefined);
    req.on('socket', (s) => s.once('close', () => {
      closed = true;
      clearTimeout(timer);
      agent.destroy();
      // Let a response already in the socket's buffer be parsed first.
      setImmediate(() => resolve({ status, text, sentBytes: sent, ms: Date.now() - started }));
    }));
    const pump = () => {
      while (!closed && sent < o.totalBytes) {
        const n = Math.min(chunk.length, o.totalBytes - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      if (!closed) req.end();
    };
    pump();
  });
}
