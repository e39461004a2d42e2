/**
 * One HTTP/1.1 request over one connection (a unix socket, TCP, or TLS), for the clients
 * that run in a fresh process per call: the `berth` CLI and the FlexVolume driver (admin
 * API), dvdcli (Docker plugin API). node:http costs them a module tree to load and, on every
 * first request, the compilation of node's IPv6-address regex (its agent checks whether the
 * host is an IP): together about a third of a bare `node -e 0`. This is the part of
 * HTTP/1.1 a request-reply client needs, built on node:net (or, for the per-call executables
 * on a unix socket, on the blocking connections of blocking-socket.ts):
 * - the request is written at once with Content-Length and `Connection: close`;
 * - the reply's body is framed by chunked transfer coding, Content-Length, or the close;
 * - 1xx interim replies are skipped; 204/304 and replies to HEAD have no body;
 * - the body can be read whole or chunk by chunk as it arrives (NDJSON progress);
 * - a silence longer than `timeoutMs` ends the request with the caller's error.
 * Errors before a reply carry the socket's errno `code` (ENOENT, ECONNREFUSED), as node:http's do.
 */
import type { ConnectionOptions } from 'node:tls';
import { blockingConnection, type BlockingSockets, type Connection } from './blocking-socket.js';

/**
 * Where the server listens. A unix socket with `sockets` (the per-call executables' addon,
 * blocking-socket.ts) is reached through it, without node:net.
 */
export type Http1Target =
  | { readonly socketPath: string; readonly sockets?: BlockingSockets | null }
  | { readonly host: string; readonly port: number; readonly tls?: ConnectionOptions };

export interface Http1Request {
  readonly method: string;
  /** Path and query, already encoded. */
  readonly path: string;
  /** Header names in any case; Host, Connection and Content-Length are set here. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent with its Content-Length; undefined sends no body and no length. */
  readonly body?: string;
  /** Longest silence allowed (connect, reply, each part of the body); default none. */
  readonly timeoutMs?: number;
  /** The error a timeout ends the request with. */
  readonly onTimeout?: () => Error;
}

export interface Http1Response {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /** Body chunks as they arrive, then `end` once or `error` once. Call at most once. */
  read(sink: BodySink): void;
  /** The whole body as UTF-8. */
  text(): Promise<string>;
  /** Stops reading and closes the connection (the rest of the body is dropped). */
  close(): void;
}

export interface BodySink {
  data(chunk: Buffer): void;
  end(): void;
  error(err: Error): void;
}

/** Largest status line + headers accepted: a reply past this is not from the server we expect. */
const MAX_HEAD_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

/** A malformed reply or a connection closed mid-reply; `code` as node:http would give it. */
export class Http1Error extends Error {
  constructor(message: string, readonly code: 'HPE_INVALID' | 'ECONNRESET') {
    super(message);
    this.name = 'Http1Error';
  }
}

function checkToken(what: string, value: string): void {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`HTTP ${what} must not contain CR, LF or NUL: ${JSON.stringify(value)}`);
}

/** node:net and node:tls load on first use: a per-call executable with the addon never needs them. */
async function open(target: Http1Target, timeoutMs: number): Promise<Connection> {
  if ('socketPath' in target && target.sockets) return blockingConnection(target.sockets, target.socketPath, timeoutMs);
  if ('socketPath' in target) return (await import('node:net')).connect({ path: target.socketPath });
  if (!target.tls) return (await import('node:net')).connect({ host: target.host, port: target.port });
  const { connect } = await import('node:tls');
  return connect({ ...target.tls, host: target.host, port: target.port });
}

/**
 * Sends one request and resolves when the reply's status and headers have arrived.
 * @example const res = await http1Request({ socketPath: '/run/berth/berth.sock' }, { method: 'GET', path: '/v1/status' }); JSON.parse(await res.text());
 */
export async function http1Request(target: Http1Target, req: Http1Request): Promise<Http1Response> {
  checkToken('method', req.method);
  checkToken('path', req.path);
  // As node:http sends it: the port unless it is the scheme's default.
  const host = 'socketPath' in target ? 'localhost' : `${target.host.includes(':') ? `[${target.host}]` : target.host}${target.port === (target.tls ? 443 : 80) ? '' : `:${target.port}`}`;
  let head = `${req.method} ${req.path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`;
  for (const [name, value] of Object.entries(req.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'connection' || lower === 'content-length') continue;
    checkToken(`header ${name}`, name);
    checkToken(`header ${name}`, value);
    head += `${name}: ${value}\r\n`;
  }
  if (req.body !== undefined) head += `Content-Length: ${Buffer.byteLength(req.body)}\r\n`;
  const socket = await open(target, req.timeoutMs ?? 0);
  return new Promise<Http1Response>((resolve, reject) => {
    const parser = createReplyParser(req.method === 'HEAD', (status, headers) => resolve(response(status, headers)));
    let failed: Error | null = null;
    const fail = (err: Error) => {
      if (failed) return;
      failed = err;
      socket.destroy();
      if (parser.state() === 'head') reject(err);
      else parser.fail(err);
    };
    if (req.timeoutMs) {
      socket.setTimeout(req.timeoutMs, () => fail(req.onTimeout?.() ?? new Error(`HTTP ${req.method} ${req.path}: no reply within ${req.timeoutMs} ms`)));
    }
    socket.on('error', fail);
    socket.on('data', (chunk: Buffer) => {
      try {
        if (parser.push(chunk)) socket.destroy();
      } catch (err) {
        fail(err as Error);
      }
    });
    socket.on('end', () => {
      if (parser.state() === 'done' || failed) return;
      if (parser.state() === 'until-close') {
        parser.finish();
        socket.destroy();
        return;
      }
      fail(new Http1Error(`HTTP ${req.method} ${req.path}: the connection closed before the reply was complete`, 'ECONNRESET'));
    });
    // One write: the request line, headers and body leave in one packet.
    socket.write(req.body === undefined ? `${head}\r\n` : `${head}\r\n${req.body}`);

    function response(status: number, headers: Record<string, string>): Http1Response {
      return {
        status,
        headers,
        read: (sink) => parser.drain(sink),
        text: () =>
          new Promise<string>((res, rej) => {
            const chunks: Buffer[] = [];
            parser.drain({ data: (c) => chunks.push(c), end: () => res(Buffer.concat(chunks).toString('utf8')), error: rej });
          }),
        close: () => {
          failed ??= new Error('closed by the client');
          socket.destroy();
        },
      };
    }
  });
}

type ParserState = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'until-close' | 'done';

/**
 * The reply side of HTTP/1.1: head, then a body framed by chunked coding, Content-Length or
 * the end of the connection. `push` returns true once the reply is complete. Body chunks are
 * held until a sink is given (`drain`), so none is lost between the head and the caller's read.
 */
function createReplyParser(noBody: boolean, onHead: (status: number, headers: Record<string, string>) => void) {
  let state: ParserState = 'head';
  let buf: Buffer = Buffer.alloc(0);
  let remaining = 0;
  let sink: BodySink | null = null;
  const held: Buffer[] = [];
  let outcome: { err: Error | null } | null = null;

  const emit = (chunk: Buffer) => {
    if (chunk.length === 0) return;
    if (sink) sink.data(chunk);
    else held.push(chunk);
  };
  const complete = (err: Error | null) => {
    if (outcome) return;
    outcome = { err };
    if (state !== 'done' && !err) state = 'done';
    if (sink) settle(sink);
  };
  const settle = (s: BodySink) => (outcome!.err ? s.error(outcome!.err) : s.end());

  function parseHead(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
    if (!m) throw new Http1Error(`not an HTTP/1.1 reply: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`, 'HPE_INVALID');
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Http1Error(`malformed HTTP header line: ${JSON.stringify(line.slice(0, 80))}`, 'HPE_INVALID');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    // Interim replies (100 Continue, 103 Early Hints) precede the real one.
    if (status >= 100 && status < 200) return;
    const chunked = /(?:^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '');
    if (noBody || status === 204 || status === 304) state = 'done';
    else if (chunked) state = 'chunk-size';
    else if (headers['content-length'] !== undefined) {
      if (!/^\d+$/.test(headers['content-length'])) throw new Http1Error(`invalid Content-Length ${JSON.stringify(headers['content-length'])}`, 'HPE_INVALID');
      remaining = Number(headers['content-length']);
      state = remaining === 0 ? 'done' : 'length';
    } else state = 'until-close';
    onHead(status, headers);
    if (state === 'done') complete(null);
  }

  /** One step on the buffered bytes; false when more bytes are needed. */
  function step(): boolean {
    switch (state) {
      case 'head': {
        const end = buf.indexOf(HEAD_END);
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES) throw new Http1Error(`reply head larger than ${MAX_HEAD_BYTES} bytes`, 'HPE_INVALID');
          return false;
        }
        const text = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + HEAD_END.length);
        parseHead(text);
        return true;
      }
      case 'length': {
        if (buf.length === 0) return false;
        const take = buf.subarray(0, remaining);
        buf = buf.subarray(take.length);
        remaining -= take.length;
        emit(take);
        if (remaining === 0) complete(null);
        return remaining === 0;
      }
      case 'chunk-size': {
        const eol = buf.indexOf(CRLF);
        if (eol < 0) {
          if (buf.length > 1024) throw new Http1Error('chunk size line too long', 'HPE_INVALID');
          return false;
        }
        const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(buf.subarray(0, eol).toString('latin1'));
        if (!size) throw new Http1Error(`invalid chunk size line ${JSON.stringify(buf.subarray(0, Math.min(eol, 40)).toString('latin1'))}`, 'HPE_INVALID');
        buf = buf.subarray(eol + CRLF.length);
        remaining = parseInt(size[1]!, 16);
        state = remaining === 0 ? 'trailers' : 'chunk-data';
        return true;
      }
      case 'chunk-data': {
        if (buf.length === 0) return false;
        const take = buf.subarray(0, remaining);
        buf = buf.subarray(take.length);
        remaining -= take.length;
        emit(take);
        if (remaining === 0) state = 'chunk-end';
        return remaining === 0;
      }
      case 'chunk-end': {
        if (buf.length < CRLF.length) return false;
        if (!buf.subarray(0, CRLF.length).equals(CRLF)) throw new Http1Error('chunk not followed by CRLF', 'HPE_INVALID');
        buf = buf.subarray(CRLF.length);
        state = 'chunk-size';
        return true;
      }
      case 'trailers': {
        const eol = buf.indexOf(CRLF);
        if (eol < 0) return false;
        buf = buf.subarray(eol + CRLF.length);
        if (eol === 0) complete(null);
        return true;
      }
      case 'until-close': {
        if (buf.length === 0) return false;
        emit(buf);
        buf = Buffer.alloc(0);
        return false;
      }
      case 'done':
        return false;
    }
  }

  return {
    state: () => state,
    /** Feeds bytes from the socket; true once the reply is complete. */
    push(chunk: Buffer): boolean {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (state !== 'done' && step());
      return state === 'done';
    },
    /** The connection ended: the end of a body framed by the close. */
    finish: () => complete(null),
    fail: (err: Error) => complete(err),
    drain(s: BodySink): void {
      if (sink) throw new Error('the reply body is already being read');
      sink = s;
      for (const c of held.splice(0)) s.data(c);
      if (outcome) settle(s);
    },
  };
}
