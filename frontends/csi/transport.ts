/**
 * The CSI frontend's gRPC transport: unary calls over node:http2 (h2c on the unix socket),
 * which is all CSI is: every CSI RPC is unary, requests a few KB.
 *
 * Why not grpc-js's Server: on a CSI call that does nothing (NodeGetCapabilities) its layers
 * (interceptors, metadata objects, deadline timers, a compression filter, per-call promises)
 * cost 0.2-0.3 ms of a 1.2-2.5 ms answer on this machine, measured side by side with this
 * module; a CSI lifecycle is six calls. HTTP/2 itself (framing, HPACK, flow control, PING,
 * GOAWAY) stays node:http2's; the message encoding stays proto-loader's (the same
 * serializers grpc-js would call). What is here is the gRPC-over-HTTP/2 mapping for unary
 * calls (PROTOCOL-HTTP2.md), and the rules a server must keep:
 * - POST only (else HTTP 405); content-type application/grpc[+proto|;...] (else HTTP 415);
 * - a path nothing serves: UNIMPLEMENTED naming it (services absent in this csi.mode included);
 * - exactly one length-prefixed message: none or two is UNIMPLEMENTED (cardinality), a cut
 *   frame or an undecodable one INTERNAL, a compressed one UNIMPLEMENTED (identity only,
 *   said in grpc-accept-encoding), more than `maxMessageBytes` RESOURCE_EXHAUSTED, refused
 *   while it arrives (never buffered whole), the rest of it read and dropped;
 * - the answer: headers and the message, then trailers with grpc-status 0; a failure is one
 *   Trailers-Only HEADERS frame with grpc-status and grpc-message (percent-encoded as the
 *   spec says, so any text survives);
 * - a caller that goes away (cancelled, deadline passed) does not stop the handler (the core
 *   finishes what it started, as CSI expects of a retried call); its answer is dropped. The
 *   caller's grpc-timeout is its own to enforce.
 *
 * @example
 *   const server = createUnaryServer({ maxMessageBytes: 1 << 20 });
 *   server.add(services.Node, { NodeGetInfo: (req, reply) => reply(null, { node_id: 'n1' }) });
 *   await server.listen('/run/berth/csi.sock');
 *   await server.close(5_000);
 */
import { constants, createServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { status, type MethodDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { clip } from '../../core/index.js';

/** A failed call's answer: the gRPC status code and its message. */
export interface UnaryError {
  readonly code: status;
  readonly details: string;
}

/** Answers one call: `reply(null, response)` or `reply(error)`, once. */
export type UnaryMethod = (request: Record<string, unknown>, reply: (err: UnaryError | null, response?: unknown) => void) => void;

export interface UnaryServer {
  /** Serves `methods` (by method name) at `service`'s paths; a method not given answers UNIMPLEMENTED. */
  add(service: ServiceDefinition, methods: Record<string, UnaryMethod>): void;
  /** Listens on the unix socket `path` (already claimed: unix-socket.ts). */
  listen(path: string): Promise<void>;
  /** Stops accepting; calls in flight get up to `graceMs` to be answered, then every connection is cut. */
  close(graceMs: number): Promise<void>;
}

interface Route {
  readonly def: MethodDefinition<unknown, unknown>;
  readonly method: UnaryMethod;
}

const CONTENT_TYPE = 'application/grpc';
const GRPC_CONTENT_TYPE = /^application\/grpc(?:[+;]|$)/;
/** The 5-byte prefix of every message: compressed flag, then its length (big-endian). */
const PREFIX = 5;

/** One uncompressed gRPC message frame: flag 0, the length (big-endian), the bytes. */
export function messageFrame(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(PREFIX + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, PREFIX);
  return frame;
}

/** grpc-message as the spec encodes it: bytes outside printable ASCII, and '%', as %XX. */
export function percentEncode(text: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) return text;
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Sends through `send`; a stream that closed under it (the caller reset it between the check
 * and the send) is dropped, never thrown into the handler that answered.
 */
function deliver(stream: ServerHttp2Stream, send: () => void): void {
  if (stream.destroyed || stream.closed) return; // the caller went away: nothing to answer
  try {
    send();
  } catch {
    stream.destroy();
  }
}

/** Answers with an HTTP status only (not a gRPC request at all). */
function refuseHttp(stream: ServerHttp2Stream, httpStatus: number): void {
  stream.resume();
  deliver(stream, () => stream.respond({ ':status': httpStatus }, { endStream: true }));
}

/** A failure as one Trailers-Only HEADERS frame; what the caller still sends is read and dropped. */
function answerError(stream: ServerHttp2Stream, err: UnaryError, extra: Record<string, string> = {}): void {
  stream.resume();
  deliver(stream, () => {
    if (stream.headersSent) {
      stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    stream.respond({
      ':status': 200, 'content-type': CONTENT_TYPE, 'grpc-status': String(err.code), 'grpc-message': percentEncode(err.details), ...extra,
    }, { endStream: true });
  });
}

function answer(stream: ServerHttp2Stream, def: MethodDefinition<unknown, unknown>, response: unknown): void {
  let frame: Buffer;
  try {
    frame = messageFrame(def.responseSerialize(response));
  } catch (err) {
    answerError(stream, { code: status.INTERNAL, details: `response: cannot be encoded: ${err instanceof Error ? err.message : String(err)}` });
    return;
  }
  deliver(stream, () => {
    stream.respond({ ':status': 200, 'content-type': CONTENT_TYPE }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame);
  });
}

/** The one request message of a unary call, or the error that refuses it. */
function decode(def: MethodDefinition<unknown, unknown>, body: Buffer): { request: Record<string, unknown> } | { error: UnaryError; headers?: Record<string, string> } {
  if (body.length === 0) return { error: { code: status.UNIMPLEMENTED, details: 'request: no message; a unary call sends exactly one' } };
  if (body.length < PREFIX) return { error: { code: status.INTERNAL, details: 'request: the message frame is cut short' } };
  const length = body.readUInt32BE(1);
  if (body[0] !== 0) {
    return {
      error: { code: status.UNIMPLEMENTED, details: 'request: the message is compressed; this server accepts only uncompressed (identity) messages' },
      headers: { 'grpc-accept-encoding': 'identity' },
    };
  }
  if (body.length < PREFIX + length) return { error: { code: status.INTERNAL, details: 'request: the message frame is cut short' } };
  if (body.length > PREFIX + length) return { error: { code: status.UNIMPLEMENTED, details: 'request: more than one message; a unary call sends exactly one' } };
  try {
    return { request: (def.requestDeserialize(body.subarray(PREFIX)) ?? {}) as Record<string, unknown> };
  } catch (err) {
    return { error: { code: status.INTERNAL, details: `request: cannot be decoded: ${err instanceof Error ? err.message : String(err)}` } };
  }
}

/**
 * @example const server = createUnaryServer({ maxMessageBytes: MAX_CSI_MESSAGE_BYTES });
 */
export function createUnaryServer(opts: {
  readonly maxMessageBytes: number;
  /** A failure of the listening socket itself (accept: EMFILE...); the server keeps listening. */
  readonly onError?: (err: Error) => void;
}): UnaryServer {
  const routes = new Map<string, Route>();
  const sessions = new Set<ServerHttp2Session>();
  // maxSessionMemory: Node's default (10 MB) refuses new streams on a connection with many
  // calls in flight (a node starting 100 pods); grpc-js lifts it the same way.
  const server = createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
  server.on('error', (err: Error) => opts.onError?.(err));

  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => undefined); // a connection the client broke: its streams close with it
  });

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined); // a reset from the caller: nothing left to answer
    if (headers[':method'] !== 'POST') return refuseHttp(stream, constants.HTTP_STATUS_METHOD_NOT_ALLOWED);
    const type = headers['content-type'];
    if (typeof type !== 'string' || !GRPC_CONTENT_TYPE.test(type)) return refuseHttp(stream, constants.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE);
    const path = headers[':path'] ?? '';
    const route = routes.get(path);
    if (!route) return answerError(stream, { code: status.UNIMPLEMENTED, details: `the server does not implement the method ${clip(path, 256)}` });

    const limit = PREFIX + opts.maxMessageBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    stream.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > limit) {
        refused = true;
        chunks.length = 0;
        answerError(stream, { code: status.RESOURCE_EXHAUSTED, details: `request: the message is larger than the ${opts.maxMessageBytes} bytes this server accepts` });
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      if (refused) return;
      const decoded = decode(route.def, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      if ('error' in decoded) {
        answerError(stream, decoded.error, decoded.headers);
        return;
      }
      let replied = false;
      try {
        route.method(decoded.request, (err, response) => {
          if (replied) return;
          replied = true;
          if (err) answerError(stream, err);
          else answer(stream, route.def, response);
        });
      } catch (err) {
        if (!replied) answerError(stream, { code: status.INTERNAL, details: err instanceof Error ? err.message : String(err) });
        replied = true;
      }
    });
  });

  return {
    add(service, methods) {
      for (const [name, def] of Object.entries(service)) {
        const method = methods[name];
        if (method && !def.requestStream && !def.responseStream) routes.set(def.path, { def, method });
      }
    },

    listen(path) {
      return new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },

    async close(graceMs) {
      if (!server.listening) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // GOAWAY to every connection: calls in flight finish, no new ones start.
      for (const s of sessions) s.close();
      let timer: NodeJS.Timeout | undefined;
      const cut = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          resolve();
        }, graceMs);
      });
      await Promise.race([closed, cut]);
      clearTimeout(timer);
      await closed;
    },
  };
}
