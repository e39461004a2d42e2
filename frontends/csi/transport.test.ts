import { connect as connectHttp2, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as connectNet } from 'node:net';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { createCsiClient, grpcError, type CsiClient } from '../../test/helpers/csi-client.js';
import { createLeanCsiClient } from '../../test/helpers/csi-lean-client.js';
import { createTmpRoot, type TmpRoot } from '../../test/helpers/tmp-root.js';
import { loadCsiServices } from './proto.js';
import { createUnaryServer, percentEncode, type UnaryMethod, type UnaryServer } from './transport.js';

const roots: TmpRoot[] = [];
afterEach(async () => {
  for (const r of roots.splice(0)) await r.cleanup();
});

const MAX = 64 * 1024;

/** A server with Identity's Probe and GetPluginInfo as given, and a grpc-js client on it. */
async function setup(methods: Record<string, UnaryMethod>): Promise<{ server: UnaryServer; c: CsiClient; sock: string; root: TmpRoot }> {
  const root = createTmpRoot('csi-transport');
  roots.push(root);
  const sock = root.path('csi.sock');
  const server = createUnaryServer({ maxMessageBytes: MAX });
  server.add(loadCsiServices().Identity, methods);
  await server.listen(sock);
  root.defer(() => server.close(0));
  const c = createCsiClient(sock);
  root.defer(() => c.close());
  return { server, c, sock, root };
}

const info: UnaryMethod = (_req, reply) => reply(null, { name: 'transport.test', vendor_version: '1' });

/** One raw HTTP/2 request on its own connection: what came back, headers and trailers merged. */
async function raw(sock: string, opts: { path?: string; method?: string; contentType?: string; body?: Buffer }): Promise<{ headers: IncomingHttpHeaders; data: Buffer }> {
  const session: ClientHttp2Session = connectHttp2('http://localhost', { createConnection: () => connectNet(sock) });
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({
        ':method': opts.method ?? 'POST', ':path': opts.path ?? '/csi.v1.Identity/GetPluginInfo',
        'content-type': opts.contentType ?? 'application/grpc', te: 'trailers',
      }, { endStream: opts.body === undefined });
      let headers: IncomingHttpHeaders = {};
      const data: Buffer[] = [];
      req.on('response', (h) => { headers = { ...headers, ...h }; });
      req.on('trailers', (t) => { headers = { ...headers, ...t }; });
      req.on('data', (d: Buffer) => data.push(d));
      req.on('end', () => resolve({ headers, data: Buffer.concat(data) }));
      req.on('error', reject);
      if (opts.body !== undefined) req.end(opts.body);
    });
  } finally {
    session.close();
  }
}

/** A gRPC message frame: flag byte, big-endian length, bytes. */
const frame = (bytes: Buffer, compressed = 0) => Buffer.concat([Buffer.from([compressed]), u32(bytes.length), bytes]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

describe('CSI gRPC transport (unary calls over node:http2)', () => {
  it('answers a call with its message, and a failure with its code and message, any text intact', async () => {
    const text = 'volume "v%20é" is\nnot here: 100% (ünïcödé, \u{1F4E6})';
    const { c, sock } = await setup({
      GetPluginInfo: info,
      Probe: (_req, reply) => reply({ code: status.NOT_FOUND, details: text }),
    });
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test', vendor_version: '1' });
    expect(await grpcError(c.identity('Probe'))).toMatchObject({ code: status.NOT_FOUND, details: text });
    // On the wire, as the gRPC spec encodes grpc-message: '%' and every byte outside printable ASCII as %XX.
    const r = await raw(sock, { path: '/csi.v1.Identity/Probe', body: frame(Buffer.alloc(0)) });
    expect(r.headers['grpc-status']).toBe(String(status.NOT_FOUND));
    expect(r.headers['grpc-message']).toBe(percentEncode(text));
    expect(r.headers['grpc-message']).toMatch(/^volume "v%2520%C3%A9" is%0Anot here: 100%25 /);
  });

  it('gives the benchmarks\' lean client the answers and errors grpc-js\'s client gets', async () => {
    const text = 'no volume "é%" here';
    const { c, sock } = await setup({
      GetPluginInfo: info,
      Probe: (_req, reply) => reply({ code: status.FAILED_PRECONDITION, details: text }),
    });
    const lean = createLeanCsiClient(sock);
    try {
      expect(await lean.identity('GetPluginInfo')).toEqual(await c.identity('GetPluginInfo'));
      const [a, b] = [await grpcError(lean.identity('Probe')), await grpcError(c.identity('Probe'))];
      expect([a.code, a.details]).toEqual([status.FAILED_PRECONDITION, text]);
      expect([a.code, a.details]).toEqual([b.code, b.details]);
      expect((await grpcError(lean.node('NodeGetInfo'))).code).toBe(status.UNIMPLEMENTED);
    } finally {
      lean.close();
    }
  });

  it('sends an answer larger than HTTP/2\'s flow-control window whole (2 MiB through a 64 KiB window)', async () => {
    const manifest = Object.fromEntries(Array.from({ length: 2048 }, (_, i) => [`key-${i}`, `${i}`.padEnd(1024, 'x')]));
    const { c } = await setup({ GetPluginInfo: (_req, reply) => reply(null, { name: 'big', vendor_version: '1', manifest }) });
    const got = await c.identity('GetPluginInfo');
    expect(Object.keys(got.manifest)).toHaveLength(2048);
    expect(got.manifest['key-2047']).toBe(manifest['key-2047']);
  });

  it('drops a connection that does not speak HTTP/2 and keeps serving', async () => {
    const { c, sock } = await setup({ GetPluginInfo: info });
    const closed = await new Promise<string>((resolve) => {
      const s = connectNet(sock);
      s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('data', () => undefined);
      s.on('close', () => resolve('closed'));
      s.on('error', () => undefined);
    });
    expect(closed).toBe('closed');
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test' });
  });

  it('answers UNIMPLEMENTED naming the path for a method nobody serves, whether the proto has it or not', async () => {
    const { c, sock } = await setup({ GetPluginInfo: info });
    expect(await grpcError(c.identity('Probe'))).toMatchObject({ code: status.UNIMPLEMENTED, details: 'the server does not implement the method /csi.v1.Identity/Probe' });
    expect(await grpcError(c.controller('CreateVolume', { name: 'x' }))).toMatchObject({ code: status.UNIMPLEMENTED, details: expect.stringContaining('/csi.v1.Controller/CreateVolume') });
    const r = await raw(sock, { path: '/no.Such/Method', body: frame(Buffer.alloc(0)) });
    expect([r.headers[':status'], r.headers['grpc-status']]).toEqual([200, String(status.UNIMPLEMENTED)]);
    // A path of 20,000 characters is named clipped, not echoed whole into the trailer.
    const long = await raw(sock, { path: `/x/${'y'.repeat(20_000)}`, body: frame(Buffer.alloc(0)) });
    expect(long.headers['grpc-status']).toBe(String(status.UNIMPLEMENTED));
    expect(String(long.headers['grpc-message']).length).toBeLessThan(400);
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test' });
  });

  it('refuses what is not a gRPC request with the HTTP status: 405 for a GET, 415 for another content type', async () => {
    let calls = 0;
    const { sock } = await setup({ GetPluginInfo: (req, reply) => { calls++; info(req, reply); } });
    expect((await raw(sock, { method: 'GET' })).headers[':status']).toBe(405);
    expect((await raw(sock, { contentType: 'application/json', body: Buffer.from('{}') })).headers[':status']).toBe(415);
    expect((await raw(sock, { contentType: 'application/grpc+proto', body: frame(Buffer.alloc(0)) })).headers['grpc-status']).toBe('0');
    expect(calls).toBe(1);
  });

  it('takes exactly one uncompressed, whole, decodable message, and names what is wrong with any other', async () => {
    let calls = 0;
    const { sock, c } = await setup({ GetPluginInfo: (req, reply) => { calls++; info(req, reply); } });
    const cases: Array<[string, Buffer, number, RegExp]> = [
      ['no message', Buffer.alloc(0), status.UNIMPLEMENTED, /^request: no message/],
      ['two messages', Buffer.concat([frame(Buffer.alloc(0)), frame(Buffer.alloc(0))]), status.UNIMPLEMENTED, /^request: more than one message/],
      ['a compressed message', frame(Buffer.from([1, 2, 3]), 1), status.UNIMPLEMENTED, /^request: the message is compressed/],
      ['a cut prefix', Buffer.from([0, 0, 0]), status.INTERNAL, /^request: the message frame is cut short/],
      ['a cut message', Buffer.concat([Buffer.from([0]), u32(10), Buffer.from([1, 2])]), status.INTERNAL, /^request: the message frame is cut short/],
      // field 1 with wire type 7, which protobuf does not have
      ['bytes that are not protobuf', frame(Buffer.from([0x0f, 0x01])), status.INTERNAL, /^request: cannot be decoded: /],
    ];
    for (const [what, body, code, message] of cases) {
      const r = await raw(sock, { body });
      expect({ what, status: r.headers['grpc-status'], message: r.headers['grpc-message'] }).toEqual({ what, status: String(code), message: expect.stringMatching(message) });
      if (what === 'a compressed message') expect(r.headers['grpc-accept-encoding']).toBe('identity');
    }
    expect(calls).toBe(0);
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test' });
    expect(calls).toBe(1);
  });

  it('refuses a message over the limit while it arrives, RESOURCE_EXHAUSTED, and the connection keeps working', async () => {
    let calls = 0;
    const { sock, c } = await setup({ GetPluginInfo: (req, reply) => { calls++; info(req, reply); } });
    const big = frame(Buffer.concat([Buffer.from([0x0a]), Buffer.from([0x80, 0x80, 0x08]), Buffer.alloc(2 * MAX, 0x61)])); // field 1, 128 KiB
    const r = await raw(sock, { body: big });
    expect([r.headers['grpc-status'], r.headers['grpc-message']]).toEqual([String(status.RESOURCE_EXHAUSTED), `request: the message is larger than the ${MAX} bytes this server accepts`]);
    expect(calls).toBe(0);
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test' });
  });

  it('lets a handler whose caller went away finish, drops its answer, and keeps serving', async () => {
    let finish: (() => void) | undefined;
    let finished = false;
    const { c, sock } = await setup({
      GetPluginInfo: info,
      Probe: (_req, reply) => {
        finish = () => {
          finished = true;
          reply(null, { ready: { value: true } });
        };
      },
    });
    const session = connectHttp2('http://localhost', { createConnection: () => connectNet(sock) });
    try {
      const send = (path: string) => {
        const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => undefined);
        req.end(frame(Buffer.alloc(0)));
        return req;
      };
      const gone = send('/csi.v1.Identity/Probe');
      await expect.poll(() => finish !== undefined).toBe(true);
      gone.close(); // RST_STREAM: the caller gives up
      // A call after it on the same connection is answered only once the server has read the reset.
      const next = send('/csi.v1.Identity/GetPluginInfo');
      const trailers = await new Promise<IncomingHttpHeaders>((resolve) => next.on('trailers', resolve));
      next.resume();
      expect(trailers['grpc-status']).toBe('0');
      finish!(); // the handler ends after its caller left: nothing to answer, nothing thrown
      expect(finished).toBe(true);
    } finally {
      session.destroy();
    }
    expect(await c.identity('GetPluginInfo')).toMatchObject({ name: 'transport.test' });
  });

  it('close(grace): a call in flight is answered, new connections are refused, and a call still open at the deadline is cut', async () => {
    const pending: Array<() => void> = [];
    const { server, c, sock } = await setup({
      GetPluginInfo: info,
      Probe: (_req, reply) => pending.push(() => reply(null, { ready: { value: true } })),
    });
    const answered = c.identity('Probe');
    await expect.poll(() => pending.length).toBe(1);
    const closing = server.close(60_000);
    pending.shift()!();
    expect((await answered).ready).toEqual({ value: true });
    await closing;
    const refused = await new Promise<string>((resolve) => {
      const s = connectNet(sock);
      s.on('connect', () => { s.destroy(); resolve('connected'); });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toMatch(/^(ENOENT|ECONNREFUSED)$/);

    let arrived = false;
    const second = await setup({ Probe: () => { arrived = true; } }); // never answers
    const hung = grpcError(second.c.identity('Probe'));
    await expect.poll(() => arrived).toBe(true);
    await second.server.close(100);
    expect((await hung).code).toBe(status.UNAVAILABLE);
  });
});
