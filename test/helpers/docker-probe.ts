/**
 * Proof, before a suite uses a held driver name, that dockerd reaches that name at its fixed
 * address (docker-drivers.ts). Our own suites never serve a name anywhere else, but dockerd
 * keeps whatever address it first found a name at until it restarts, so a name served
 * elsewhere by anything outside these tests would otherwise fail the suite later with a
 * "dial unix ...: no such file" from deep inside Docker.
 *
 * The probe serves a minimal, empty volume plugin at the name's address (announced by its spec
 * file for spec names; for spec-tls names over https with the name's fixed certificates,
 * requiring Docker's client certificate, so it also proves dockerd holds a TLS client that
 * berth will accept) and runs `docker volume ls --filter driver=<name>`, which makes dockerd
 * activate the name if it does not know it yet (finding it at this address) and ask it for
 * its volumes: any request on the probe proves dockerd dials this address, and nothing is
 * created anywhere. A name dockerd does not reach is remembered for the life of
 * that dockerd (TEST_RUN_DIR/unreachable/<name>, keyed by its pid and start time and the
 * address), so it is skipped at once afterwards instead of costing dockerd's ~15 s of retries
 * again. With no dockerd running there is nothing to prove.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { dirname, join } from 'node:path';
import { specContent, type DriverAddress } from './docker-drivers.js';
import { TEST_RUN_DIR } from './machine-lock.js';

const UNREACHABLE_DIR = join(TEST_RUN_DIR, 'unreachable');
const PROBE_TIMEOUT_MS = 60_000;

/** "pid starttime" of the running dockerd (starttime: /proc/<pid>/stat field 22), or null. */
async function dockerdIdentity(): Promise<string | null> {
  const pid = (await readFile('/var/run/docker.pid', 'utf8').catch(() => '')).trim();
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!pid || !stat) return null;
  return `${pid} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
}

/** GET on the Docker Engine API (its unix socket, as the docker CLI finds it by default). */
function engineGet(path: string): Promise<{ status: number; body: string }> {
  const host = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  return new Promise((resolve, reject) => {
    if (!host.startsWith('unix://')) {
      reject(new Error(`DOCKER_HOST=${host}: the test probe talks to a local dockerd only`));
      return;
    }
    const req = request({ socketPath: host.slice('unix://'.length), path, timeout: PROBE_TIMEOUT_MS }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`dockerd did not answer GET ${path} within ${PROBE_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** An empty volume plugin: answers Activate, Capabilities and List; refuses everything else. */
async function probePlugin(a: DriverAddress, seen: () => void): Promise<Server> {
  const handler: RequestListener = (req, res) => {
    seen();
    req.resume();
    req.on('end', () => {
      const reply: Record<string, unknown> =
        req.url === '/Plugin.Activate' ? { Implements: ['VolumeDriver'] }
          : req.url === '/VolumeDriver.Capabilities' ? { Capabilities: { Scope: 'local' } }
            : req.url === '/VolumeDriver.List' ? { Volumes: [], Err: '' }
              : { Err: 'berth test probe: refused' };
      res.setHeader('content-type', 'application/vnd.docker.plugins.v1.2+json');
      res.end(JSON.stringify(reply));
    });
  };
  if (!a.tls) return createServer(handler);
  const [ca, cert, key] = await Promise.all([a.tls.ca, a.tls.server.cert, a.tls.server.key].map((f) => readFile(f)));
  return createTlsServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true }, handler);
}

function listen(server: Server, a: DriverAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => (server.off('error', reject), resolve());
    if (a.socket) server.listen(a.socket, done);
    else server.listen(Number(a.tcp!.split(':')[1]), '127.0.0.1', done);
  });
}

/**
 * Null when dockerd reaches the name at its address, else why not. The caller holds the name
 * and nothing serves its address (docker-drivers.ts whyBlocked).
 * @example const why = await dockerdReaches(driverAddress('berth-test-docker-0'));
 */
export async function dockerdReaches(a: DriverAddress): Promise<string | null> {
  const dockerd = await dockerdIdentity();
  if (!dockerd) return null; // no dockerd, nothing cached anywhere
  const marker = join(UNREACHABLE_DIR, a.name);
  const known = (await readFile(marker, 'utf8').catch(() => '')).split('\n');
  if (known[0] === `${dockerd} ${a.url}`) return known[1] ?? 'dockerd does not reach it';

  let reached = false;
  const server = await probePlugin(a, () => (reached = true));
  await listen(server, a);
  try {
    if (a.spec) {
      const tmp = join(dirname(a.spec), `.${a.name}.probe`); // not *.spec or *.json: dockerd ignores it
      await writeFile(tmp, specContent(a), { mode: 0o644 });
      await rename(tmp, a.spec);
    }
    // `docker volume ls --filter driver=<name>`; the API also returns what the driver said.
    const filters = encodeURIComponent(JSON.stringify({ driver: [a.name] }));
    const r = await engineGet(`/volumes?filters=${filters}`).catch((err: Error) => ({ status: 0, body: err.message }));
    if (reached) return null;
    let said = r.body.trim();
    try {
      said = ((JSON.parse(r.body) as { Warnings?: string[] | null }).Warnings ?? []).join('; ') || said;
    } catch {
      // not JSON: an error text
    }
    const dial = /dial (?:unix|tcp) (\S+?): connect/.exec(said)?.[1];
    // dockerd also keeps the TLS client it first built for a spec-tls name.
    const tls = a.tls ? `, or the certificates in ${a.tls.dir} were replaced since it loaded them` : '';
    const why = `dockerd does not reach it at ${a.url}${dial ? ` but dials ${dial}` : ` (${said.slice(0, 200)})`}: ` +
      `something outside these tests served this name elsewhere earlier in this dockerd's life${tls}; restart dockerd to forget it`;
    await mkdir(UNREACHABLE_DIR, { recursive: true, mode: 0o700 });
    await writeFile(marker, `${dockerd} ${a.url}\n${why}\n`);
    return why;
  } finally {
    if (a.spec) await rm(a.spec, { force: true });
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    if (a.socket) await rm(a.socket, { force: true });
  }
}
