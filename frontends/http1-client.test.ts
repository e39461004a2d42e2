import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { http1Request, type Http1Response } from './http1-client.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-http1-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

let seq = 0;
/** A unix-socket server that answers every connection with `reply(socket, requestText)`. */
async function rawServer(reply: (socket: Socket, request: string) => void): Promise<string> {
  const path = join(dir, `s${seq++}.sock`);
  const server = createNetServer((socket) => {
    let text = '';
    let replied = false;
    socket.on('data', (b) => {
      text += b.toString('latin1');
      if (!replied && text.includes('\r\n\r\n')) {
        replied = true;
        reply(socket, text);
      }
    });
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return path;
}

/** Writes `text` one byte per write, so every parser state sees a partial buffer. */
async function dribble(socket: Socket, text: string): Promise<void> {
  for (const byte of Buffer.from(text, 'latin1')) {
    await new Promise<void>((r) => socket.write(Buffer.from([byte]), () => r()));
    await new Promise((r) => setImmediate(r));
  }
}

const chunks = (res: Http1Response): Promise<string[]> =>
  new Promise((resolve, reject) => {
    const out: string[] = [];
    res.read({ data: (c) => out.push(c.toString()), end: () => resolve(out), error: reject });
  });

describe('http1Request', () => {
  it('sends the request as node:http servers expect it and reads a Content-Length reply', async () => {
    const path = join(dir, `h${seq++}.sock`);
    const seen: Array<{ method?: string; url?: string; headers: IncomingMessage['headers']; body: string }> = [];
    const server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ ok: 'ünïcode' }));
      });
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const res = await http1Request({ socketPath: path }, { method: 'POST', path: '/v1/x?y=1', headers: { 'X-Berth-Frontend': 'admin' }, body: '{"name":"é"}' });
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['set-cookie']).toBe('a=1, b=2');
      expect(JSON.parse(await res.text())).toEqual({ ok: 'ünïcode' });
      expect(seen).toEqual([
        {
          method: 'POST',
          url: '/v1/x?y=1',
          headers: { host: 'localhost', connection: 'close', 'x-berth-frontend': 'admin', 'content-length': String(Buffer.byteLength('{"name":"é"}')) },
          body: '{"name":"é"}',
        },
      ]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('reads a chunked reply dribbled one byte at a time, with extensions and trailers', async () => {
    const path = await rawServer((s) => {
      void dribble(s, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nC\r\nworld, again\r\n0\r\nX-Trailer: t\r\n\r\n').then(() => s.end());
    });
    const res = await http1Request({ socketPath: path }, { method: 'GET', path: '/' });
    expect(await res.text()).toBe('hello world, again');
  });

  it('hands body chunks over as they arrive (NDJSON progress), before the reply ends', async () => {
    let release: () => void = () => undefined;
    const path = await rawServer((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n');
      s.write('b\r\n{"first":1}\r\n');
      release = () => s.end('c\r\n{"second":2}\r\n0\r\n\r\n');
    });
    const res = await http1Request({ socketPath: path }, { method: 'POST', path: '/v1/volumes?progress=true', body: '{}' });
    const got = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      res.read({
        data: (c) => {
          out.push(c.toString());
          if (out.length === 1) release(); // the server sends the rest only after the first line arrived
        },
        end: () => resolve(out),
        error: reject,
      });
    });
    expect(got).toEqual(['{"first":1}', '{"second":2}']);
  });

  it('reads a body framed by the close, skips 1xx replies, and knows 204 and HEAD have no body', async () => {
    const untilClose = await rawServer((s) => s.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall of it'));
    expect(await (await http1Request({ socketPath: untilClose }, { method: 'GET', path: '/' })).text()).toBe('all of it');

    const noContent = await rawServer((s) => s.write('HTTP/1.1 204 No Content\r\n\r\n')); // and keeps the connection open
    const r204 = await http1Request({ socketPath: noContent }, { method: 'DELETE', path: '/v1/x' });
    expect(r204.status).toBe(204);
    expect(await r204.text()).toBe('');

    const head = await rawServer((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'));
    expect(await chunks(await http1Request({ socketPath: head }, { method: 'HEAD', path: '/' }))).toEqual([]);
  });

  it('fails with ECONNRESET when the connection closes mid-body, and with HPE_INVALID on a reply that is not HTTP', async () => {
    const short = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345'));
    const res = await http1Request({ socketPath: short }, { method: 'GET', path: '/' });
    await expect(res.text()).rejects.toMatchObject({ code: 'ECONNRESET' });

    const noHead = await rawServer((s) => s.end());
    await expect(http1Request({ socketPath: noHead }, { method: 'GET', path: '/' })).rejects.toMatchObject({ code: 'ECONNRESET' });

    const garbage = await rawServer((s) => s.end('SSH-2.0-OpenSSH\r\n\r\n'));
    await expect(http1Request({ socketPath: garbage }, { method: 'GET', path: '/' })).rejects.toMatchObject({ code: 'HPE_INVALID' });

    const badChunk = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'));
    await expect((await http1Request({ socketPath: badChunk }, { method: 'GET', path: '/' })).text()).rejects.toMatchObject({ code: 'HPE_INVALID' });
  });

  it("gives connect errors the socket's errno code, and ends a silent server with the caller's timeout error", async () => {
    await expect(http1Request({ socketPath: join(dir, 'absent.sock') }, { method: 'GET', path: '/' })).rejects.toMatchObject({ code: 'ENOENT' });

    const silent = await rawServer(() => undefined);
    const started = Date.now();
    await expect(
      http1Request({ socketPath: silent }, { method: 'GET', path: '/', timeoutMs: 200, onTimeout: () => new Error('took too long') }),
    ).rejects.toThrow('took too long');
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);

    // Silence in the middle of the body counts too.
    const stalls = await rawServer((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12'));
    const res = await http1Request({ socketPath: stalls }, { method: 'GET', path: '/', timeoutMs: 200, onTimeout: () => new Error('stalled') });
    await expect(res.text()).rejects.toThrow('stalled');
  });

  it('refuses CR and LF in the method, path and headers (no request smuggling)', async () => {
    const path = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    await expect(http1Request({ socketPath: path }, { method: 'GET', path: '/x HTTP/1.1\r\nEvil: 1' })).rejects.toThrow(TypeError);
    await expect(http1Request({ socketPath: path }, { method: 'GET', path: '/', headers: { authorization: 'Bearer a\r\nX: y' } })).rejects.toThrow(TypeError);
  });

  it('speaks to a TCP listener too', async () => {
    const server = createHttpServer((req, res) => res.end(`${req.headers.host}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as { port: number };
      const res = await http1Request({ host: '127.0.0.1', port }, { method: 'GET', path: '/' });
      expect(await res.text()).toBe(`127.0.0.1:${port}`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
