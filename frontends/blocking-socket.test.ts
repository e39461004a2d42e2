// The per-call executables' blocking unix-socket calls (native/sock.c through
// blocking-socket.ts), alone and under http1-client.ts. A blocking call holds this thread, so
// every server here runs in a worker thread of its own, with its own event loop.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { blockingConnection, loadBlockingSockets, sockAddonBeside, type BlockingSockets } from './blocking-socket.js';
import { http1Request } from './http1-client.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-blocking-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const loaded = loadBlockingSockets([sockAddonBeside(import.meta.dirname)]);
if (!loaded) throw new Error(`${sockAddonBeside(import.meta.dirname)} did not load: run npm run native`);
const sockets: BlockingSockets = loaded;

/**
 * The server, in a worker: 'pair' answers the requests of two connections only once both have
 * arrived (a client that waits for the first reply before sending the second never gets one);
 * 'silent' reads and never answers; 'big' answers 300 KiB of body framed by the close.
 */
const SERVER = `
const { createServer } = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const { path, mode } = workerData;
const waiting = [];
const server = createServer((socket) => {
  let text = '';
  socket.on('error', () => {});
  socket.on('data', (b) => {
    text += b.toString('latin1');
    if (!text.includes('\\r\\n\\r\\n') || socket.answered) return;
    socket.answered = true;
    const line = text.slice(0, text.indexOf('\\r\\n'));
    if (mode === 'silent') return;
    if (mode === 'big') {
      socket.end('HTTP/1.1 200 OK\\r\\n\\r\\n' + 'x'.repeat(300 * 1024));
      return;
    }
    waiting.push([socket, line]);
    if (waiting.length < 2) return;
    for (const [s, l] of waiting.splice(0)) s.end('HTTP/1.1 200 OK\\r\\nContent-Length: ' + l.length + '\\r\\n\\r\\n' + l);
  });
});
server.listen(path, () => parentPort.postMessage('listening'));
`;

const workers: Worker[] = [];
// Terminated, not asked to close: a test that failed mid-call may leave a connection open,
// which server.close() would wait for. The socket files go with the directory.
afterEach(async () => {
  for (const w of workers.splice(0)) await w.terminate();
});

let seq = 0;
async function server(mode: 'pair' | 'silent' | 'big'): Promise<string> {
  const path = join(dir, `w${seq++}.sock`);
  const worker = new Worker(SERVER, { eval: true, workerData: { path, mode } });
  workers.push(worker);
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return path;
}

const request = (path: string, name: string, timeoutMs = 10_000) =>
  http1Request({ socketPath: path, sockets }, { method: 'POST', path: `/${name}`, body: '{}', timeoutMs, onTimeout: () => new Error(`${name}: timed out`) });

describe('blocking unix-socket calls (berth_sock)', () => {
  it('sends two requests written in one turn before waiting for either reply', async () => {
    const path = await server('pair');
    // The server answers neither until both have arrived: serial calls would time out.
    const [a, b] = await Promise.all([request(path, 'Plugin.Activate', 5000), request(path, 'VolumeDriver.Get', 5000)]);
    expect([a.status, await a.text()]).toEqual([200, 'POST /Plugin.Activate HTTP/1.1']);
    expect([b.status, await b.text()]).toEqual([200, 'POST /VolumeDriver.Get HTTP/1.1']);
  });

  it('reads a reply of many pieces to the end of the stream', async () => {
    const path = await server('big');
    const res = await request(path, 'VolumeDriver.List');
    expect((await res.text()).length).toBe(300 * 1024);
  });

  it("ends a silent server's call through the caller's timeout", async () => {
    const path = await server('silent');
    await expect(request(path, 'VolumeDriver.Mount', 200)).rejects.toThrow('VolumeDriver.Mount: timed out');
  });

  it('fails to connect as node:net does: code, syscall and address', async () => {
    const missing = join(dir, 'missing.sock');
    expect(() => sockets.connect(missing, 0)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'connect', address: missing, message: `connect ENOENT ${missing}` }));
    // A file nobody listens on (a socket left by a dead server answers the same).
    writeFileSync(join(dir, 'plain'), 'not a socket');
    for (const [path, code] of [[join(dir, 'plain'), 'ECONNREFUSED'], [`/${'x'.repeat(200)}`, 'ENAMETOOLONG']] as const) {
      expect(() => sockets.connect(path, 0)).toThrow(expect.objectContaining({ code, syscall: 'connect' }));
    }
    // Through http1-client the error reaches the caller the same way (dvdcli retries on these codes).
    await expect(request(missing, 'Plugin.Activate')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('checks its arguments before any system call', () => {
    const bad = sockets as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => bad.connect!(42, 0)).toThrow(TypeError);
    expect(() => bad.connect!(join(dir, 'a\0b'), 0)).toThrow(/NUL/);
    expect(() => bad.connect!(join(dir, 'x.sock'), -1)).toThrow(RangeError);
    expect(() => bad.send!(0, 'not a buffer')).toThrow(TypeError);
    expect(() => bad.recv!(0, 0)).toThrow(RangeError);
    expect(() => bad.recv!(1.5, 10)).toThrow(RangeError);
  });

  it('refuses a timeout other than the one it connected with', async () => {
    const path = await server('silent');
    const c = blockingConnection(sockets, path, 100);
    try {
      expect(() => c.setTimeout(200, () => undefined)).toThrow(RangeError);
    } finally {
      c.destroy();
    }
  });

  it('loads nothing from a missing or foreign file, so the caller keeps node:net', () => {
    writeFileSync(join(dir, 'foreign.node'), 'not an addon');
    expect(loadBlockingSockets([join(dir, 'none.node'), join(dir, 'foreign.node')])).toBeNull();
  });
});
