// The optional TCP listener: the same plugin API on a TCP port, announced by a spec file
// written atomically once the port is open and removed on stop; dvdcli's plugin client
// finds a driver that has only the spec file and talks to it over TCP.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSilentLogger, type Config, type VolumeService } from '../../core/index.js';
import { connectPlugin, locatePlugin } from '../dvdcli/plugin-client.js';
import { createDockerFrontend } from './index.js';
import { specUrl } from './spec-file.js';

let dir: string;
const stops: Array<() => Promise<unknown>> = [];

/** Only what Activate/Capabilities touch; the app's other routes are covered in app.test.ts. */
// Only Capabilities is called: it reads whether the node is in a cluster.
const service = { status: () => ({ cluster: { mode: 'embedded' } }) } as unknown as VolumeService;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-docker-tcp-'));
});
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
  rmSync(dir, { recursive: true, force: true });
});

function frontend(over: Partial<Config['docker']> = {}) {
  const config: Config['docker'] = {
    enabled: true, driverName: 'tcp-t', socket: join(dir, 'run', 'tcp-t.sock'),
    tcp: '127.0.0.1:0', tls: { ca: null, cert: null, key: null, clientCert: null, clientKey: null }, specDir: join(dir, 'plugins'), ...over,
  };
  const f = createDockerFrontend({ service, config, log: createSilentLogger() });
  stops.push(() => f.stop());
  return { f, config, specPath: join(config.specDir, `${config.driverName}.spec`) };
}

/** Docker's exact bytes (empty Host header, no Content-Type, trailing newline) over TCP. */
function rawCapabilities(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(port, host);
    let text = '';
    c.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n\r\n') && text.endsWith('}')) c.end();
    });
    c.on('end', () => resolve(text));
    c.on('error', reject);
    c.write('POST /VolumeDriver.Capabilities HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\n' +
      'Content-Length: 3\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{}\n');
  });
}

function activateOverSocket(socket: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: '/Plugin.Activate', method: 'POST' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
    req.end();
  });
}

const portOf = (url: string) => Number(new URL(url).port);

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(false);
    });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('docker TCP listener and spec file', () => {
  it('serves on the bound port, writes it into <specDir>/<driver>.spec, keeps the socket, removes both on stop', async () => {
    const { f, config, specPath } = frontend();
    expect(f.tcpUrl()).toBeNull();
    await f.start();
    const url = f.tcpUrl()!;
    expect(url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const port = portOf(url);
    expect(port).toBeGreaterThan(0); // port 0 in the config: the real one is announced
    expect(readFileSync(specPath, 'utf8')).toBe(`${url}\n`);
    expect(statSync(specPath).mode & 0o777).toBe(0o644);
    expect(readdirSync(config.specDir)).toEqual(['tcp-t.spec']); // no temporary file left

    const reply = await rawCapabilities(port);
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(reply).toMatch(/content-type: application\/vnd\.docker\.plugins\.v1\.2\+json/i);
    expect(reply.slice(reply.indexOf('\r\n\r\n') + 4)).toBe('{"Capabilities":{"Scope":"local"}}');
    expect(await activateOverSocket(config.socket)).toEqual({ Implements: ['VolumeDriver'] });

    await f.stop();
    expect(existsSync(specPath)).toBe(false);
    expect(existsSync(config.socket)).toBe(false);
    expect(await refusesConnections(port)).toBe(true);
    expect(f.tcpUrl()).toBeNull();
    await f.stop(); // twice is fine
  });

  it('overwrites a stale spec file left by a crashed daemon', async () => {
    const { f, config, specPath } = frontend();
    mkdirSync(config.specDir, { recursive: true });
    writeFileSync(specPath, 'tcp://127.0.0.1:1\n');
    await f.start();
    expect(readFileSync(specPath, 'utf8')).toBe(`${f.tcpUrl()}\n`);
    expect(f.tcpUrl()).not.toBe('tcp://127.0.0.1:1');
  });

  it('leaves a spec file alone on stop once another daemon has replaced it', async () => {
    const { f, specPath } = frontend();
    await f.start();
    writeFileSync(specPath, 'tcp://127.0.0.1:4242\n');
    await f.stop();
    expect(readFileSync(specPath, 'utf8')).toBe('tcp://127.0.0.1:4242\n');
  });

  it('refuses a port in use, naming docker.tcp, and leaves no socket or spec file behind', async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise((r) => busy.close(r)));
    const port = (busy.address() as { port: number }).port;
    const { f, config, specPath } = frontend({ tcp: `127.0.0.1:${port}` });
    await expect(f.start()).rejects.toMatchObject({ kind: 'FailedPrecondition', field: 'docker.tcp', message: expect.stringMatching(/docker\.tcp: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/) });
    expect(existsSync(config.socket)).toBe(false);
    expect(existsSync(specPath)).toBe(false);
  });

  it('announces an IPv6 loopback listener in brackets', async () => {
    const { f, specPath } = frontend({ tcp: '[::1]:0' });
    await f.start();
    expect(f.tcpUrl()).toMatch(/^tcp:\/\/\[::1\]:\d+$/);
    expect(readFileSync(specPath, 'utf8')).toBe(`${f.tcpUrl()}\n`);
    expect(await rawCapabilities(portOf(f.tcpUrl()!), '::1')).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('announces a wildcard bind as loopback (the spec file is for the engine on this host)', () => {
    expect(specUrl({ address: '0.0.0.0', family: 'IPv4', port: 9 })).toBe('tcp://127.0.0.1:9');
    expect(specUrl({ address: '::', family: 'IPv6', port: 9 })).toBe('tcp://127.0.0.1:9');
    expect(specUrl({ address: '10.1.2.3', family: 'IPv4', port: 9 })).toBe('tcp://10.1.2.3:9');
  });

  it("dvdcli's plugin client finds a spec-only driver and calls it over TCP (IPv4 and IPv6)", async () => {
    for (const tcp of ['127.0.0.1:0', '[::1]:0']) {
      const { f, config } = frontend({ tcp, socket: join(dir, 'elsewhere', `${tcp.length}.sock`) });
      await f.start();
      // The plugin's unix socket is not in the socket dir dvdcli searches: only the spec file leads to it.
      const dirs = { socketDirs: [join(dir, 'no-sockets')], specDirs: [config.specDir] };
      const found = locatePlugin(config.driverName, dirs);
      expect(found).toMatchObject({ kind: 'tcp', source: join(config.specDir, 'tcp-t.spec') });
      const plugin = await connectPlugin({ name: config.driverName, waitSeconds: 0, warn: () => {}, dirs });
      expect(await plugin.call('VolumeDriver.Capabilities', {})).toEqual({ Capabilities: { Scope: 'local' } });
      await f.stop();
    }
  });
});
