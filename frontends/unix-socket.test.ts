// The socket-file lifecycle every listening frontend shares: what is claimed, what is
// refused (and named by its config key), and that a refused claim touches nothing.
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimSocketPath, closeHttpServer, listenOnSocket, releaseSocketPath } from './unix-socket.js';

let dir: string;
const servers: Server[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-unix-socket-'));
});
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

function listen(path: string): Promise<Server> {
  const s = createServer();
  servers.push(s);
  return new Promise((resolve) => s.listen(path, () => resolve(s)));
}

/** A socket file whose listener is gone, as kill -9 leaves it (close() would unlink it). */
async function staleSocket(path: string): Promise<void> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(path, r));
  const { renameSync } = await import('node:fs');
  renameSync(path, `${path}.keep`);
  await new Promise<void>((r) => s.close(() => r()));
  renameSync(`${path}.keep`, path);
}

describe('claimSocketPath', () => {
  it('creates the missing directory and leaves a free path free', async () => {
    const path = join(dir, 'a', 'b', 's.sock');
    await claimSocketPath(path, 'x.socket');
    expect(statSync(join(dir, 'a', 'b')).isDirectory()).toBe(true);
    expect(existsSync(path)).toBe(false);
  });

  it('removes a stale socket nobody answers on', async () => {
    const path = join(dir, 'stale.sock');
    await staleSocket(path);
    expect(statSync(path).isSocket()).toBe(true);
    await claimSocketPath(path, 'x.socket');
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a live socket, naming the config key, and leaves it in place', async () => {
    const path = join(dir, 'live.sock');
    await listen(path);
    await expect(claimSocketPath(path, 'docker.socket')).rejects.toMatchObject({
      kind: 'FailedPrecondition',
      message: expect.stringMatching(/^docker\.socket: .*in use by another process/),
    });
    expect(statSync(path).isSocket()).toBe(true);
  });

  it('refuses a regular file and a symlink (never follows it)', async () => {
    const file = join(dir, 'file.sock');
    writeFileSync(file, 'data');
    await expect(claimSocketPath(file, 'csi.endpoint')).rejects.toMatchObject({
      kind: 'FailedPrecondition',
      message: expect.stringMatching(/^csi\.endpoint: .*not a socket/),
    });
    const target = join(dir, 'target.sock');
    await staleSocket(target);
    const link = join(dir, 'link.sock');
    symlinkSync(target, link);
    await expect(claimSocketPath(link, 'admin.socket')).rejects.toMatchObject({ kind: 'FailedPrecondition' });
    expect(existsSync(file) && statSync(target).isSocket()).toBe(true);
  });
});

describe('listenOnSocket / closeHttpServer / releaseSocketPath', () => {
  it('listens with mode 0660, closes with idle keep-alive connections open, removes the file once', async () => {
    const path = join(dir, 'http.sock');
    const server = createHttpServer((_req, res) => res.end('ok'));
    await claimSocketPath(path, 'x.socket');
    await listenOnSocket(server, path);
    expect(statSync(path).mode & 0o777).toBe(0o660);
    const { request, Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true });
    const body = await new Promise<string>((resolve, reject) => {
      request({ socketPath: path, path: '/', agent }, (res) => {
        let t = '';
        res.on('data', (c: Buffer) => (t += c.toString()));
        res.on('end', () => resolve(t));
      }).on('error', reject).end();
    });
    expect(body).toBe('ok');
    await closeHttpServer(server); // resolves although the agent still holds its connection
    agent.destroy();
    await releaseSocketPath(path);
    expect(existsSync(path)).toBe(false);
    await releaseSocketPath(path); // already gone is fine
  });

  it('gives the socket the configured group (root stays the owner)', async () => {
    const path = join(dir, 'group.sock');
    const server = createHttpServer((_req, res) => res.end('ok'));
    await claimSocketPath(path, 'x.socket');
    await listenOnSocket(server, path, 4711);
    const st = statSync(path);
    expect({ mode: st.mode & 0o777, uid: st.uid, gid: st.gid }).toEqual({ mode: 0o660, uid: 0, gid: 4711 });
    await closeHttpServer(server);
    await releaseSocketPath(path);
  });
});
