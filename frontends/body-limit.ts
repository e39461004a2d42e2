/**
 * The request body cap of the HTTP frontends (admin API and Docker plugin API, on the unix
 * socket and the TCP listener alike), in one place so both refuse the same way.
 *
 * Hono's bodyLimit middleware counts, without ever holding more than the cap: a
 * Content-Length over the cap is refused before a byte of the body is read, and a chunked
 * body is read through a counter and refused as soon as it passes the cap. The rest of the
 * body is never parsed: once the refusal is sent, @hono/node-server discards what is still
 * in flight (at most 64 MiB or 0.5 s) and closes the connection. A 300 MB POST therefore
 * costs the daemon at most the cap in memory, and its sender gets the refusal at once.
 *
 * The refusal does not say `Connection: close`: a server that closes while the client is
 * still writing makes most clients (Node's among them) fail on the write (EPIPE) without
 * ever reading the answer; reading the excess for a moment first lets them see it.
 *
 * A body with a Content-Length is checked by its header alone and left to the handler:
 * Node's HTTP parser delivers exactly that many bytes, never more. Hono's middleware reads
 * `c.req.raw.body` first, which on @hono/node-server turns the light request into a full web
 * Request with a ReadableStream over the socket, about a tenth of a plugin call's CPU; the
 * handler's own `c.req.text()` then reads the socket directly. Only a chunked body (or one
 * that declares neither) goes through Hono's counter.
 *
 * Every legitimate body is far smaller: the largest is a create with labels and options,
 * each value at most 4 KiB.
 *
 * @example app.use('*', limitBody((c, limit) => c.json({ error: `over ${limit} bytes` }, 413)));
 */
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';

/** 1 MiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** "1 MiB": the cap as people read it, for refusal messages. */
export const MAX_BODY_TEXT = '1 MiB';

/** A middleware that answers a body over `limit` bytes with `refuse(c, limit)`, whose status and content are the frontend's. */
export function limitBody(refuse: (c: Context, limit: number) => Response, limit = MAX_BODY_BYTES): MiddlewareHandler {
  const counted = bodyLimit({ maxSize: limit, onError: (c) => refuse(c, limit) });
  return async (c, next) => {
    const length = c.req.header('content-length');
    if (length === undefined || c.req.header('transfer-encoding') !== undefined) return counted(c, next);
    // Node's parser refuses a malformed Content-Length before a request reaches the app.
    if (Number(length) > limit) return refuse(c, limit);
    await next();
  };
}
