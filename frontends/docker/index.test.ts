// The plugin server on a real unix socket: raw HTTP the way Docker sends it, socket
// lifecycle (stale socket replaced, live socket refused, removed on stop).
import { mkdtempSync, rmSync, existsSync, writeFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSilentLogger, type VolumeService } from '../../core/index.js';
import { createDockerFrontend } from './index.js';

let dir: string;
const stops: Array<() => Promise<unknown>> = [];

/** Only what Activate/Capabilities touch; the app's other routes are covered in app.test.ts. */
// Only Capabilities is called: it reads whether the node is in a cluster.
const service = { status: () => ({ cluster: { mode: 'embedded' } }) } as unknown as VolumeService;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-docker-srv-'));
});
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
  rmSync(dir, { recursive: true, force: true });
});

function frontend(socket: string) {
  const f = createDockerFrontend({ service, config: { enabled: true, driverName: 't', socket, tcp: null, tls: { ca: null, cert: null, key: null, clientCert: null, clientKey: null }, specDir: join(dir, 'specs') }, log: createSilentLogger() });
  stops.push(() => f.stop());
  return f;
}

/** POST without Content-Type, as Docker does. */
function post(socket: string, path: string, body: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('createDockerFrontend', () => {
  it('serves the protocol on a unix socket it creates (directory included) and removes on stop', async () => {
    const socket = join(dir, 'plugins', 'berth-x.sock');
    const f = frontend(socket);
    await f.start();
    expect(statSync(socket).isSocket()).toBe(true);
    const a = await post(socket, '/Plugin.Activate', '');
    expect(a).toMatchObject({ status: 200, type: 'application/vnd.docker.plugins.v1.2+json' });
    expect(JSON.parse(a.body)).toEqual({ Implements: ['VolumeDriver'] });
    expect(JSON.parse((await post(socket, '/VolumeDriver.Capabilities', '{}\n')).body)).toEqual({ Capabilities: { Scope: 'local' } });
    await f.stop();
    expect(existsSync(socket)).toBe(false);
    await f.stop(); // twice is fine
  });

  it('answers the exact bytes Docker sends (empty Host header, no Content-Type, trailing newline)', async () => {
    const socket = join(dir, 'raw.sock');
    await frontend(socket).start();
    const reply = await new Promise<string>((resolve, reject) => {
      const c = connect(socket);
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
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(reply).toMatch(/content-type: application\/vnd\.docker\.plugins\.v1\.2\+json/i);
    expect(reply.slice(reply.indexOf('\r\n\r\n') + 4)).toBe('{"Capabilities":{"Scope":"local"}}');
  });

  it('replaces a stale socket left by a crash', async () => {
    const socket = join(dir, 'stale.sock');
    // A process that listens and is killed with SIGKILL leaves its socket file behind.
    const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('up'))", socket]);
    await new Promise((r) => child.stdout.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(statSync(socket).isSocket()).toBe(true);
    const f = frontend(socket);
    await f.start();
    expect(JSON.parse((await post(socket, '/Plugin.Activate', '')).body)).toEqual({ Implements: ['VolumeDriver'] });
  });

  it('refuses a socket another process is serving, and a path that is not a socket', async () => {
    const socket = join(dir, 'live.sock');
    const live = createServer();
    await new Promise<void>((r) => live.listen(socket, r));
    stops.push(() => new Promise((r) => live.close(r)));
    const refused = frontend(socket);
    await expect(refused.start()).rejects.toThrow(/in use by another process/);
    await refused.stop();
    expect(statSync(socket).isSocket()).toBe(true); // still the other process's

    const file = join(dir, 'file.sock');
    writeFileSync(file, '');
    await expect(frontend(file).start()).rejects.toThrow(/not a socket/);
    expect(existsSync(file)).toBe(true);
  });
});
