/**
 * Docker volume driver names for the tests, each bound for good to one address.
 *
 * Why: dockerd 20.10 keeps a legacy plugin, with the address it first found it at, under its
 * name until it restarts (moby pkg/plugins `storage` and the volume store's driver map), and
 * any `docker volume ls` (filtered or not) activates every plugin it finds in
 * /run/docker/plugins and /etc/docker/plugins. A name once served at one address and later
 * at another is dialled at the first one forever: "dial unix <an old test root>/docker.sock:
 * no such file or directory". So here:
 * - a name's address is a function of the name alone (driverAddress), never of a test's
 *   temporary root or a free port: a socket in /run/docker/plugins, a spec file pointing at
 *   a fixed socket under TEST_RUN_DIR, a spec file pointing at a fixed loopback port, or a
 *   .json spec file pointing at a fixed https loopback port with fixed TLS files (dockerd
 *   keeps the TLS client it built from them too: MACHINE_CERT_DIR, made once per boot);
 * - every suite draws from its own pool (DRIVER_POOLS), so no two suites share a name;
 * - a name is held through a machine-wide lock (machine-lock.ts) while its berth runs, so two
 *   test runs (two checkouts) never serve it at once;
 * - no pool reuses a name or a port of the driver names earlier versions of these tests used
 *   (LEGACY_DRIVER_NAMES), which may still be cached in a long-running dockerd at temporary
 *   addresses.
 * Pools are small on purpose: every name dockerd has met and whose berth is gone costs ~15 s
 * in every unfiltered `docker volume ls` and in every lookup of a volume name dockerd does not
 * know (see cleanupDocker and the dvdcli suites, which avoid both).
 */
import { lstat, mkdir, readFile, readdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { certPaths, MACHINE_CERT_DIR, machineCerts, type TestCerts } from './certs.js';
import { dockerdReaches } from './docker-probe.js';
import { acquireAny, TEST_RUN_DIR, tryLock, type Lock } from './machine-lock.js';

/** Where dockerd looks for plugin sockets, and for spec files (/usr/lib/docker/plugins is never used here). */
export const PLUGIN_DIR = '/run/docker/plugins';
export const SPEC_DIR = '/etc/docker/plugins';
/** The fixed sockets that spec files of 'spec-unix' names point at. */
export const SPEC_SOCKET_DIR = join(TEST_RUN_DIR, 'plugins');

export type DriverKind = 'socket' | 'spec-unix' | 'spec-tcp' | 'spec-tls';

interface PoolDef {
  readonly kind: DriverKind;
  readonly names: readonly string[];
}

/**
 * One pool per suite. spec-tcp and spec-tls names take their port from TCP_PORTS. Ports are
 * below the ephemeral range (32768+), so no freePort() or outgoing connection takes them by chance.
 */
export const DRIVER_POOLS = {
  /** test/integration/docker.test.ts */
  docker: { kind: 'socket', names: ['berth-test-docker-0', 'berth-test-docker-1'] },
  /** test/integration/data-services.test.ts */
  dataServices: { kind: 'socket', names: ['berth-test-data-0', 'berth-test-data-1'] },
  /** test/integration/dvdcli-docker.test.ts */
  dvdcliDocker: { kind: 'socket', names: ['berth-test-dvdcli-docker-0', 'berth-test-dvdcli-docker-1'] },
  /** test/integration/dvdcli.test.ts: found through a spec file */
  dvdcliSpec: { kind: 'spec-unix', names: ['berth-test-dvdcli-spec-0', 'berth-test-dvdcli-spec-1'] },
  /** test/integration/dvdcli.test.ts: found through a socket (a symlink) in /run/docker/plugins */
  dvdcliSocket: { kind: 'socket', names: ['berth-test-dvdcli-sock-0', 'berth-test-dvdcli-sock-1'] },
  /** test/integration/docker-tcp.test.ts */
  dockerTcp: { kind: 'spec-tcp', names: ['berth-test-tcp-0', 'berth-test-tcp-1'] },
  /** test/integration/docker-tls.test.ts: mutual TLS through a .json spec file */
  dockerTls: { kind: 'spec-tls', names: ['berth-test-tls-0', 'berth-test-tls-1'] },
  /**
   * test/integration/cluster-frontends.test.ts: one name per node of a cluster. Only ever
   * served by a berth in cluster mode: dockerd keeps a driver's scope ("global" there) for
   * the life of the engine, so a name served in both modes would report a stale one.
   */
  clusterFrontends: { kind: 'socket', names: ['berth-test-cluster-fe-0', 'berth-test-cluster-fe-1'] },
  /** test/integration/failover.test.ts: Docker on one node, dvdcli on another (cluster mode only, like clusterFrontends) */
  failover: { kind: 'socket', names: ['berth-test-failover-0', 'berth-test-failover-1'] },
  /**
   * test/integration/readme-cluster.test.ts: node a's and node b's drivers of the README's
   * "Cluster mode" walkthrough (`berth-a`, `berth-b` there). Cluster mode only, as above.
   */
  readmeCluster: { kind: 'socket', names: ['berth-test-readme-0', 'berth-test-readme-1'] },
  /** test/integration/podman.test.ts: the name Docker and Podman share a volume through */
  podman: { kind: 'socket', names: ['berth-test-podman-0', 'berth-test-podman-1'] },
  /** test/bench/docker.bench.ts */
  benchDocker: { kind: 'socket', names: ['berth-bench-docker-0', 'berth-bench-docker-1'] },
  /** test/bench/exec.bench.ts */
  benchExec: { kind: 'spec-unix', names: ['berth-bench-exec-0', 'berth-bench-exec-1'] },
} as const satisfies Record<string, PoolDef>;

export type DriverPool = keyof typeof DRIVER_POOLS;

/**
 * The one loopback port of each spec-tcp and spec-tls name (29470 belonged to the legacy
 * berth-tcp0; 29471 was also where a development version of the TLS suite served berth-tls0
 * over https, which no pool name shares: dockerd keys what it keeps by name).
 */
export const TCP_PORTS: Readonly<Record<string, number>> = {
  'berth-test-tcp-0': 29471,
  'berth-test-tcp-1': 29472,
  'berth-test-tls-0': 29473,
  'berth-test-tls-1': 29474,
};

/** Names (and the port) older versions of these suites used, at changing addresses. */
export const LEGACY_DRIVER_NAMES = [
  'berth-it0', 'berth-it1', 'berth-it2', 'berth-it3', 'berth-data0', 'berth-data1', 'berth-tcp0', 'berth-bench0', 'berth-bench1',
  'berth-tls0',
] as const;
export const LEGACY_TCP_PORT = 29470;

/**
 * The names a spec-tls name lends its address to in the TLS suite, each with a .json spec
 * file handing Docker a client certificate berth refuses (none, expired, from another CA).
 * dockerd drops a plugin whose activation fails (moby pkg/plugins loadWithRetry), so it
 * never keeps an address for them; they are held with their spec-tls name, and their spec
 * files go with it (release, sweepStaleDrivers).
 * @example refusedTlsNames('berth-test-tls-0').expired // 'berth-test-tls-0-expired'
 */
export function refusedTlsNames(name: string): Readonly<Record<'nocert' | 'expired' | 'foreign', string>> {
  return { nocert: `${name}-nocert`, expired: `${name}-expired`, foreign: `${name}-foreign` };
}
const refusedTlsSpecs = (name: string): string[] => Object.values(refusedTlsNames(name)).map((n) => join(SPEC_DIR, `${n}.json`));

/**
 * Docker managed (v2) plugin names, for test/integration/docker-plugin.test.ts. dockerd keeps
 * no address for them (its volume store caches only legacy plugins; a v2 plugin is looked up
 * in its plugin store on every use, and a new plugin of the same name gets its own socket),
 * but a plugin name is one object in the engine: two test runs creating, enabling and
 * removing it would pull it from under each other. So each is held through a machine lock
 * while a suite uses it. berth-test/berth-plugin:it is the name a development version used.
 */
export const MANAGED_PLUGIN_NAMES = ['berth-test/berth-plugin:0', 'berth-test/berth-plugin:1'] as const;
export const LEGACY_MANAGED_PLUGIN_NAMES = ['berth-test/berth-plugin:it'] as const;

/**
 * Holds a free managed plugin name until release(), waiting while all are held by other runs.
 * The caller removes a plugin of that name a killed run may have left: nobody else uses it.
 * @example const p = await acquireManagedPluginName(); root.defer(p.release); // p.name
 */
export async function acquireManagedPluginName(timeoutMs = 100_000): Promise<{ name: string; release(): Promise<void> }> {
  const lockNames = MANAGED_PLUGIN_NAMES.map((n) => `managed-plugin-${n.replace(/[/:]/g, '-')}`);
  const lock = await acquireAny(lockNames, timeoutMs);
  return { name: MANAGED_PLUGIN_NAMES[lockNames.indexOf(lock.name)]!, release: () => lock.release() };
}

/** Where dockerd finds a test driver name: the same for the life of every dockerd. */
export interface DriverAddress {
  readonly name: string;
  readonly kind: DriverKind;
  /** The unix socket berth listens on (socket and spec-unix names), else null. */
  readonly socket: string | null;
  /** "127.0.0.1:<port>" berth listens on (spec-tcp and spec-tls names), else null. */
  readonly tcp: string | null;
  /** The spec file announcing the name (<name>.spec; <name>.json for spec-tls), else null. */
  readonly spec: string | null;
  /** What dockerd dials: "unix:///…", "tcp://127.0.0.1:<port>" or "https://127.0.0.1:<port>". */
  readonly url: string;
  /**
   * spec-tls: the fixed certificate files (MACHINE_CERT_DIR): berth serves `server` and
   * trusts `ca`; the spec file hands Docker `ca` and `client`. Else null.
   */
  readonly tls: TestCerts | null;
}

function kindOf(name: string): DriverKind {
  for (const pool of Object.values(DRIVER_POOLS) as PoolDef[]) if (pool.names.includes(name)) return pool.kind;
  throw new Error(`${name} is not a test driver name (test/helpers/docker-drivers.ts DRIVER_POOLS)`);
}

/**
 * The fixed address of a test driver name.
 * @example driverAddress('berth-test-docker-0').socket // '/run/docker/plugins/berth-test-docker-0.sock'
 */
export function driverAddress(name: string): DriverAddress {
  const kind = kindOf(name);
  if (kind === 'socket') {
    const socket = join(PLUGIN_DIR, `${name}.sock`);
    return { name, kind, socket, tcp: null, spec: null, url: `unix://${socket}`, tls: null };
  }
  if (kind === 'spec-unix') {
    const socket = join(SPEC_SOCKET_DIR, `${name}.sock`);
    return { name, kind, socket, tcp: null, spec: join(SPEC_DIR, `${name}.spec`), url: `unix://${socket}`, tls: null };
  }
  const port = TCP_PORTS[name];
  if (!port) throw new Error(`${kind} driver ${name} has no port in TCP_PORTS`);
  const tcp = `127.0.0.1:${port}`;
  if (kind === 'spec-tcp') return { name, kind, socket: null, tcp, spec: join(SPEC_DIR, `${name}.spec`), url: `tcp://${tcp}`, tls: null };
  return { name, kind, socket: null, tcp, spec: join(SPEC_DIR, `${name}.json`), url: `https://${tcp}`, tls: certPaths(MACHINE_CERT_DIR) };
}

/**
 * What a name's spec file says, byte for byte as berth writes it (frontends/docker/spec-file.ts):
 * the URL, or for spec-tls the .json with the TLS files Docker uses.
 * @example specContent(driverAddress('berth-test-tcp-0')) // 'tcp://127.0.0.1:29471\n'
 */
export function specContent(a: DriverAddress): string {
  if (!a.tls) return `${a.url}\n`;
  const TLSConfig = { InsecureSkipVerify: false, CAFile: a.tls.ca, CertFile: a.tls.client.cert, KeyFile: a.tls.client.key };
  return `${JSON.stringify({ Name: a.name, Addr: a.url, TLSConfig }, null, 2)}\n`;
}

export interface HeldDriver extends DriverAddress {
  /** The driver name (same as `name`). */
  readonly driver: string;
  /**
   * Writes the spec file of a spec-unix name (atomically: dockerd never reads half a file).
   * Call it once berth listens on `socket`; berth itself writes the spec of spec-tcp and
   * spec-tls names.
   */
  announce(): Promise<void>;
  /** Removes what is left at the address (socket, spec file), then lets the name go. */
  release(): Promise<void>;
}

const lockName = (name: string) => `driver-${name}`;

/** Whether something accepts connections on a unix socket path or a "unix://" / "tcp://" / "https://" URL. */
function answers(target: string): Promise<boolean> {
  return new Promise((resolve) => {
    const tcp = /^(?:tcp|https):\/\/(.+):(\d+)$/.exec(target);
    const c = tcp ? connect(Number(tcp[2]), tcp[1]!.replace(/^\[(.*)\]$/, '$1')) : connect(target.replace(/^unix:\/\//, ''));
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
}

/** Whether 127.0.0.1:port can be listened on right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Processes with a socket listening on 127.0.0.1:port (from /proc), for an error message. */
async function portHolders(port: number): Promise<string> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hex) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (m && inodes.has(m[1]!)) {
        const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim();
        found.push(`pid ${pid} (${cmd.slice(0, 160)})`);
        break;
      }
    }
  }
  return found.length ? found.join(', ') : 'a process this test cannot see';
}

/**
 * Why the name's fixed address cannot be used now (something still serves it, though
 * nobody holds the name), or null when it is free. Called with the name's lock held, so
 * what is left there (a socket after kill -9, a spec file) is stale and removed.
 * @example await whyBlocked(driverAddress('berth-test-tcp-0')) // 'port 29471 is taken by pid 42 (nc -l 29471)'
 */
export async function whyBlocked(a: Pick<DriverAddress, 'socket' | 'tcp' | 'spec'>): Promise<string | null> {
  if (a.socket) {
    const st = await lstat(a.socket).catch(() => null);
    if (st?.isSocket() && (await answers(a.socket))) {
      return `something still serves ${a.socket} (a berth daemon left running by a killed test process?)`;
    }
    if (st) await rm(a.socket, { force: true });
  }
  if (a.tcp) {
    const port = Number(a.tcp.split(':')[1]);
    if (!(await portFree(port))) return `port ${port} is taken by ${await portHolders(port)}`;
  }
  if (a.spec) await rm(a.spec, { force: true });
  return null;
}

/**
 * Holds a free name of the suite's pool until release(), waiting while every name is held by
 * other running tests, once dockerd is proven to reach it at its address (docker-probe.ts).
 * A name whose address something else still serves, or that dockerd has cached at another
 * address, is skipped and said so on stderr; when that leaves none, the error says what
 * blocks each name. The wait ends before a test's own 120 s timeout, so a test that cannot
 * get a name says why instead of timing out.
 *
 * @example
 *   const d = await acquireDriver('docker');
 *   root.defer(d.release);   // first registered: runs after the daemon has stopped
 *   const berth = await startTestDaemon(root, { config: { docker: { enabled: true, driverName: d.driver, socket: d.socket } } });
 */
export async function acquireDriver(pool: DriverPool, timeoutMs = 100_000): Promise<HeldDriver> {
  const names = DRIVER_POOLS[pool].names;
  const deadline = Date.now() + timeoutMs;
  const blocked = new Map<string, string>();
  for (;;) {
    const candidates = names.filter((n) => !blocked.has(n));
    if (candidates.length === 0) {
      throw new Error(`no usable Docker driver name for ${pool}: ${[...blocked].map(([n, why]) => `${n}: ${why}`).join('; ')}`);
    }
    const lock: Lock = await acquireAny(candidates.map(lockName), Math.max(deadline - Date.now(), 1));
    const address = driverAddress(lock.name.slice('driver-'.length));
    if (address.socket) await mkdir(dirname(address.socket), { recursive: true, mode: 0o700 });
    if (address.spec) await mkdir(SPEC_DIR, { recursive: true, mode: 0o755 });
    if (address.tls) {
      try {
        for (const s of refusedTlsSpecs(address.name)) await rm(s, { force: true }); // left by a killed run
        await machineCerts();
      } catch (err) {
        await lock.release();
        throw err;
      }
    }
    const why = (await whyBlocked(address)) ?? (await dockerdReaches(address));
    if (why === null) {
      let released: Promise<void> | null = null;
      return {
        ...address,
        driver: address.name,
        async announce() {
          if (address.kind !== 'spec-unix') throw new Error(`${address.name}: only spec-unix names are announced by the test`);
          const tmp = join(SPEC_DIR, `.${address.name}.tmp`); // not *.spec: dockerd ignores it
          await writeFile(tmp, specContent(address), { mode: 0o644 });
          await rename(tmp, address.spec!);
        },
        release: () =>
          (released ??= (async () => {
            try {
              if (address.spec) await rm(address.spec, { force: true });
              if (address.kind === 'spec-tls') for (const s of refusedTlsSpecs(address.name)) await rm(s, { force: true });
              if (address.socket) await rm(address.socket, { force: true });
            } finally {
              await lock.release();
            }
          })()),
      };
    }
    await lock.release();
    blocked.set(address.name, why);
    process.stderr.write(`test Docker driver ${address.name} skipped: ${why}\n`);
  }
}

/** The Addr of a .json spec file, or '' when it is not one. */
function jsonSpecAddr(text: string): string {
  try {
    return String((JSON.parse(text) as { Addr?: unknown }).Addr ?? '');
  } catch {
    return '';
  }
}

/**
 * Removes what test runs that died left in dockerd's plugin directories: the socket or spec
 * file of a pool name nobody holds, and of a legacy name (old lock files in the temp dir)
 * whose socket nobody answers on. dockerd retries a dead plugin for ~15 s on every
 * `docker volume ls`, filtered or not, while such a file is there.
 */
export async function sweepStaleDrivers(): Promise<string[]> {
  const removed: string[] = [];
  for (const pool of Object.values(DRIVER_POOLS) as PoolDef[]) {
    for (const name of pool.names) {
      const lock = await tryLock(lockName(name));
      if (!lock) continue; // in use by a running test
      try {
        const a = driverAddress(name);
        // Nobody holds the name, so its spec file is stale; its socket too unless something
        // answers there (acquireDriver names that process when a test wants the name).
        const live = a.socket !== null && (await answers(a.socket));
        const refused = a.kind === 'spec-tls' ? refusedTlsSpecs(name) : [];
        for (const p of [a.spec, ...refused, live ? null : a.socket]) {
          if (p && (await lstat(p).catch(() => null))) {
            await rm(p, { force: true });
            removed.push(p);
          }
        }
      } finally {
        await lock.release();
      }
    }
  }
  for (const name of LEGACY_DRIVER_NAMES) {
    const socket = join(PLUGIN_DIR, `${name}.sock`);
    // A dangling symlink, or a socket nobody answers on; a live one belongs to a running old test.
    if ((await lstat(socket).catch(() => null)) && !(await answers(socket))) {
      await rm(socket, { force: true });
      removed.push(socket);
    }
    for (const spec of [join(SPEC_DIR, `${name}.spec`), join(SPEC_DIR, `${name}.json`)]) {
      const text = (await readFile(spec, 'utf8').catch(() => null))?.trim();
      if (text === undefined) continue;
      if (!(await answers(spec.endsWith('.json') ? jsonSpecAddr(text) : text))) {
        await rm(spec, { force: true });
        removed.push(spec);
      }
    }
  }
  return removed;
}
