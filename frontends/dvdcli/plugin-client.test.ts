import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectPlugin, locatePlugin, PluginCallError, PluginUnavailableError } from './plugin-client.js';

interface Seen {
  method: string;
  body: string;
  headers: IncomingMessage['headers'];
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-dvdcli-unit-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A throw-away volume plugin: records requests, answers from `replies` (status, body). */
async function fakePlugin(socketPath: string, replies: Record<string, [number, unknown]>): Promise<Seen[]> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const method = (req.url ?? '').slice(1);
      seen.push({ method, body, headers: req.headers });
      const [status, reply] = replies[method] ?? [404, 'no such method'];
      res.writeHead(status, { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
      res.end(typeof reply === 'string' ? reply : JSON.stringify(reply));
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return seen;
}

const ACTIVATE: [number, unknown] = [200, { Implements: ['VolumeDriver'] }];
const noWarn = () => undefined;

describe('Docker plugin discovery', () => {
  it('finds N.sock, then N/N.sock (following symlinks), then .spec, then .json', async () => {
    const root = tmp();
    const [socks, specs] = [join(root, 'run'), join(root, 'etc')];
    mkdirSync(join(socks, 'p2'), { recursive: true });
    mkdirSync(specs);
    const real = join(root, 'real.sock');
    await fakePlugin(real, { 'Plugin.Activate': ACTIVATE });
    const dirs = { socketDirs: [socks], specDirs: [specs] };

    expect(locatePlugin('p1', dirs)).toBeNull();
    symlinkSync(real, join(socks, 'p1.sock'));
    expect(locatePlugin('p1', dirs)).toMatchObject({ kind: 'unix', socketPath: join(socks, 'p1.sock') });
    symlinkSync(real, join(socks, 'p2', 'p2.sock'));
    expect(locatePlugin('p2', dirs)).toMatchObject({ kind: 'unix', socketPath: join(socks, 'p2', 'p2.sock') });

    writeFileSync(join(specs, 'p3.spec'), `  unix://${real}\n`);
    expect(locatePlugin('p3', dirs)).toMatchObject({ kind: 'unix', socketPath: real });
    writeFileSync(join(specs, 'p4.spec'), 'tcp://127.0.0.1:8080');
    expect(locatePlugin('p4', dirs)).toMatchObject({ kind: 'tcp', tls: null });
    writeFileSync(join(specs, 'p5.json'), JSON.stringify({ Name: 'p5', Addr: 'https://127.0.0.1:9443', TLSConfig: { CAFile: '' } }));
    expect(locatePlugin('p5', dirs)).toMatchObject({ kind: 'tcp', tls: { insecureSkipVerify: true } });
    writeFileSync(join(specs, 'p6.spec'), '/no/scheme.sock');
    expect(() => locatePlugin('p6', dirs)).toThrow(/Unknown protocol/);
    writeFileSync(join(specs, 'p7.json'), JSON.stringify({ Name: 'p7', Addr: 'not a url' }));
    expect(() => locatePlugin('p7', dirs)).toThrow(expect.objectContaining({ name: 'PluginUnavailableError', message: expect.stringMatching(/p7\.json: Addr "not a url" is not a URL/) }));
    expect(() => locatePlugin('../x', dirs)).toThrow(/invalid volume driver name/);
  });
});

describe('Docker plugin calls', () => {
  it('activates, posts compact JSON with a trailing newline and the plugin Accept header', async () => {
    const root = tmp();
    const sock = join(root, 'p.sock');
    const seen = await fakePlugin(sock, { 'Plugin.Activate': ACTIVATE, 'VolumeDriver.Mount': [200, { Mountpoint: '/m', Err: '' }] });
    const plugin = await connectPlugin({ name: 'p', waitSeconds: 0, warn: noWarn, dirs: { socketDirs: [root], specDirs: [] } });
    const reply = await plugin.call<{ Mountpoint: string }>('VolumeDriver.Mount', { Name: 'v1' });
    expect(reply.Mountpoint).toBe('/m');
    expect(seen.map((s) => s.method)).toEqual(['Plugin.Activate', 'VolumeDriver.Mount']);
    expect(seen[0]!.body).toBe('');
    expect(seen[1]!.body).toBe('{"Name":"v1"}\n');
    expect(seen[1]!.headers.accept).toBe('application/vnd.docker.plugins.v1.2+json');
    expect(seen[1]!.headers['content-type']).toBeUndefined();
  });

  it('turns Err (HTTP 200 or 500) and non-JSON errors into PluginCallError texts like dvdcli', async () => {
    const root = tmp();
    const sock = join(root, 'p.sock');
    await fakePlugin(sock, {
      'Plugin.Activate': ACTIVATE,
      'VolumeDriver.Get': [200, { Err: 'volume not found' }],
      'VolumeDriver.Create': [500, { Err: 'disk full' }],
      'VolumeDriver.Remove': [500, 'boom'],
    });
    const plugin = await connectPlugin({ name: 'p', waitSeconds: 0, warn: noWarn, dirs: { socketDirs: [root], specDirs: [] } });
    await expect(plugin.call('VolumeDriver.Get', { Name: 'x' })).rejects.toThrow(new PluginCallError('volume not found', 'VolumeDriver.Get'));
    await expect(plugin.call('VolumeDriver.Create', { Name: 'x' })).rejects.toThrow('VolumeDriver.Create: disk full');
    await expect(plugin.call('VolumeDriver.Remove', { Name: 'x' })).rejects.toThrow('VolumeDriver.Remove: boom');
  });

  it('fails a call the plugin never answers after the call timeout (longer for Create and Mount)', async () => {
    const root = tmp();
    // Activates, then leaves every other request unanswered.
    const silent = createServer((req, res) => {
      if (req.url === '/Plugin.Activate') res.end(JSON.stringify({ Implements: ['VolumeDriver'] }));
    });
    await new Promise<void>((r) => silent.listen(join(root, 'mute.sock'), r));
    cleanups.push(() => new Promise<void>((r) => {
      silent.closeAllConnections();
      silent.close(() => r());
    }));
    const plugin = await connectPlugin({
      name: 'mute', waitSeconds: 0, warn: noWarn, dirs: { socketDirs: [root], specDirs: [] }, timeouts: { long: 600, short: 200 },
    });
    const timed = async (method: string) => {
      const started = Date.now();
      const err = await plugin.call(method, { Name: 'v' }).then(() => null, (e: unknown) => e);
      return { err, ms: Date.now() - started };
    };
    const get = await timed('VolumeDriver.Get');
    expect(get.err).toBeInstanceOf(PluginCallError);
    expect((get.err as Error).message).toMatch(/^VolumeDriver\.Get: the plugin did not answer within/);
    expect(get.ms).toBeGreaterThanOrEqual(150);
    expect(get.ms).toBeLessThan(550);
    const mount = await timed('VolumeDriver.Mount');
    expect(mount.err).toBeInstanceOf(PluginCallError);
    expect(mount.ms).toBeGreaterThanOrEqual(550);
  });

  it('refuses a plugin that is not a VolumeDriver, and reports a missing one after the wait', async () => {
    const root = tmp();
    await fakePlugin(join(root, 'auth.sock'), { 'Plugin.Activate': [200, { Implements: ['authz'] }] });
    const dirs = { socketDirs: [root], specDirs: [] };
    await expect(connectPlugin({ name: 'auth', waitSeconds: 0, warn: noWarn, dirs })).rejects.toThrow(/does not implement the requested driver/);
    const warnings: string[] = [];
    const started = Date.now();
    await expect(connectPlugin({ name: 'absent', waitSeconds: 1, warn: (m) => warnings.push(m), dirs })).rejects.toThrow(PluginUnavailableError);
    expect(warnings).toEqual(['Unable to locate plugin: absent, retrying in 1s']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });
});

describe('the Get sent beside Plugin.Activate (prefetch)', () => {
  const GET = { method: 'VolumeDriver.Get', body: { Name: 'pg' } };
  const VOLUME = { Volume: { Name: 'pg', Mountpoint: '/m/pg' } };

  it('goes out before the activation is answered and answers the command\'s own Get, once', async () => {
    const root = tmp();
    const events: string[] = [];
    let getArrived: () => void = () => undefined;
    const arrived = new Promise<void>((r) => (getArrived = r));
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const reply = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
          res.end(JSON.stringify(body));
        };
        events.push(`${req.url} arrived`);
        if (req.url === '/Plugin.Activate') {
          // Answered only once the Get is here (or after 2 s, and the order below fails).
          const timer = setTimeout(getArrived, 2000);
          void arrived.then(() => {
            clearTimeout(timer);
            events.push('activate answered');
            reply(200, { Implements: ['VolumeDriver'] });
          });
        } else if (req.url === '/VolumeDriver.Get') {
          getArrived();
          reply(200, VOLUME);
        } else reply(200, {});
      });
    });
    await new Promise<void>((r) => server.listen(join(root, 'p.sock'), r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const plugin = await connectPlugin({ name: 'p', waitSeconds: 0, warn: noWarn, dirs: { socketDirs: [root], specDirs: [] }, prefetch: GET });
    expect(events.indexOf('/VolumeDriver.Get arrived')).toBeLessThan(events.indexOf('activate answered'));
    expect(await plugin.call('VolumeDriver.Get', { Name: 'pg' })).toEqual(VOLUME);
    await plugin.call('VolumeDriver.Get', { Name: 'pg' });
    await plugin.call('VolumeDriver.Get', { Name: 'other' });
    // The first Get came from the prefetch; the next two went out as calls of their own.
    expect(events.filter((e) => e === '/VolumeDriver.Get arrived')).toHaveLength(3);
  });

  it('is not retried: with the plugin not up yet, only the activation warns and retries, then the Get goes out', async () => {
    const root = tmp();
    const sock = join(root, 'late.sock');
    writeFileSync(join(root, 'late.spec'), `unix://${sock}\n`);
    let seen: Seen[] | null = null;
    const warnings: string[] = [];
    const plugin = await connectPlugin({
      name: 'late', waitSeconds: 3, dirs: { socketDirs: [], specDirs: [root] }, prefetch: GET,
      // The plugin comes up when dvdcli first says it is retrying.
      warn: (m) => {
        warnings.push(m);
        if (warnings.length === 1) void fakePlugin(sock, { 'Plugin.Activate': ACTIVATE, 'VolumeDriver.Get': [200, VOLUME] }).then((s) => (seen = s));
      },
    });
    expect(await plugin.call('VolumeDriver.Get', { Name: 'pg' })).toEqual(VOLUME);
    expect(warnings).toEqual([`Unable to connect to plugin: unix://${sock}/Plugin.Activate, retrying in 1s`]);
    expect(seen!.map((r) => r.method)).toEqual(['Plugin.Activate', 'VolumeDriver.Get']);
  });
});
