// The Docker plugin API over mutual TLS (docker.tls): the .json spec file Docker reads,
// a client with a certificate from the CA gets through, a missing, expired or foreign
// certificate is refused before any request is served, with one log line saying why;
// bad TLS files are refused at start naming the key. Certificates are made with openssl.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type Config, type VolumeService } from '../../core/index.js';
import { makeCerts, type KeyPair, type TestCerts } from '../../test/helpers/certs.js';
import { createDockerFrontend } from './index.js';
import { refusalReason } from './tls.js';

let dir: string;
let certs: TestCerts;
const stops: Array<() => Promise<unknown>> = [];
const service = { backends: () => [] } as unknown as VolumeService;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-docker-tls-'));
  certs = await makeCerts(join(dir, 'certs'));
});
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function frontend(tls: Partial<Config['docker']['tls']> = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const config: Config['docker'] = {
    enabled: true, driverName: 'tls-t', socket: join(dir, 'run', 'tls-t.sock'), tcp: '127.0.0.1:0', specDir: join(dir, 'plugins'),
    tls: { ca: certs.ca, cert: certs.server.cert, key: certs.server.key, clientCert: '/etc/docker/berth/client.pem', clientKey: '/etc/docker/berth/client.key', ...tls },
  };
  const f = createDockerFrontend({ service, config, log: createLogger({ level: 'info', destination: sink }) });
  stops.push(() => f.stop());
  return { f, config, lines, specPath: join(config.specDir, 'tls-t.json') };
}

/** POST /Plugin.Activate over HTTPS, verifying berth with the CA; resolves with the body or the error code. */
function activate(url: string, client: KeyPair | null): Promise<{ body?: unknown; error?: string }> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = request({
      host: u.hostname, port: Number(u.port), method: 'POST', path: '/Plugin.Activate',
      ca: readFileSync(certs.ca), ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
    }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ body: JSON.parse(text) }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

describe('Docker plugin API over mutual TLS', () => {
  it('writes <driver>.json (https Addr, CA and the client pair for Docker) and serves a client the CA signed', async () => {
    const { f, specPath } = frontend();
    await f.start();
    const url = f.tcpUrl()!;
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(existsSync(join(dir, 'plugins', 'tls-t.spec'))).toBe(false);
    expect(JSON.parse(readFileSync(specPath, 'utf8'))).toEqual({
      Name: 'tls-t', Addr: url,
      TLSConfig: { InsecureSkipVerify: false, CAFile: certs.ca, CertFile: '/etc/docker/berth/client.pem', KeyFile: '/etc/docker/berth/client.key' },
    });
    expect(await activate(url, certs.client)).toEqual({ body: { Implements: ['VolumeDriver'] } });
    await f.stop();
    expect(existsSync(specPath)).toBe(false);
  });

  it('refuses a missing, an expired and a foreign client certificate, logging who and why', async () => {
    const { f, lines } = frontend();
    await f.start();
    const url = f.tcpUrl()!;
    for (const client of [null, certs.expired, certs.foreign]) {
      const r = await activate(url, client);
      expect(r.body, String(client?.cert)).toBeUndefined();
      expect(r.error).toMatch(/ECONNRESET|EPIPE|ERR_SSL/);
    }
    const refused = lines.filter((l) => String(l.msg).startsWith('docker.tls: refused'));
    expect(refused.map((l) => l.msg)).toEqual([
      'docker.tls: refused a client from 127.0.0.1: no client certificate was presented (Docker sends none when its certificate is not issued by the CA in docker.tls.ca)',
      'docker.tls: refused a client from 127.0.0.1: the client certificate has expired',
      'docker.tls: refused a client from 127.0.0.1: the client certificate is not signed by the CA in docker.tls.ca',
    ]);
    expect(refused[1]).toMatchObject({ level: 40, subject: 'expired', issuer: 'test-ca', code: 'CERT_HAS_EXPIRED' });
    expect(refused[2]).toMatchObject({ subject: 'foreign', issuer: 'other-ca' });
    // The listener still serves the right client afterwards.
    expect(await activate(url, certs.client)).toEqual({ body: { Implements: ['VolumeDriver'] } });
  });

  it('refuses to start on a missing or unusable TLS file, naming the key, and leaves nothing behind', async () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    const cases: Array<[Partial<Config['docker']['tls']>, string, RegExp]> = [
      [{ ca: join(dir, 'absent.pem') }, 'docker.tls.ca', /docker\.tls\.ca: cannot read .*absent\.pem: ENOENT/],
      [{ cert: garbage }, 'docker.tls.cert', /docker\.tls\.cert: .*garbage\.pem is not a usable PEM file/],
      [{ key: certs.client.key }, 'docker.tls.key', /docker\.tls\.key: .* does not match the certificate/],
    ];
    for (const [tls, field, message] of cases) {
      const { f, config, specPath } = frontend(tls);
      await expect(f.start()).rejects.toMatchObject({ field, message: expect.stringMatching(message) });
      expect(existsSync(specPath)).toBe(false);
      expect(existsSync(config.socket)).toBe(false);
    }
  });

  it('words the reasons an operator acts on', () => {
    expect(refusalReason('UNABLE_TO_GET_ISSUER_CERT', false)).toMatch(/^no client certificate was presented/);
    expect(refusalReason('CERT_NOT_YET_VALID', true)).toBe('the client certificate is not valid yet');
    expect(refusalReason('SELF_SIGNED_CERT_IN_CHAIN', true)).toMatch(/not signed by the CA in docker\.tls\.ca/);
    expect(refusalReason('CERT_REVOKED', true)).toBe('the client certificate was not accepted (CERT_REVOKED)');
  });
});
