// The rules that make a Docker driver-name collision impossible (docker-drivers.ts): one
// fixed address per name, disjoint pools, nothing shared with the names earlier versions of
// the suites used at temporary addresses; and a foreign process on a name's address is named.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MACHINE_CERT_DIR } from './certs.js';
import {
  DRIVER_POOLS, driverAddress, LEGACY_DRIVER_NAMES, LEGACY_MANAGED_PLUGIN_NAMES, LEGACY_TCP_PORT, MANAGED_PLUGIN_NAMES, PLUGIN_DIR, refusedTlsNames, SPEC_DIR, SPEC_SOCKET_DIR, specContent,
  TCP_PORTS, whyBlocked, type DriverAddress,
} from './docker-drivers.js';
import { dockerdReaches } from './docker-probe.js';
import { explainDial } from './docker.js';
import { acquireLock } from './machine-lock.js';

const pools = Object.entries(DRIVER_POOLS) as Array<[string, { kind: string; names: readonly string[] }]>;
const allNames = pools.flatMap(([, p]) => p.names);

describe('test Docker driver names', () => {
  it('every name is in exactly one pool, and none is a name earlier suites served at temporary addresses', () => {
    expect(new Set(allNames).size).toBe(allNames.length);
    for (const legacy of LEGACY_DRIVER_NAMES) expect(allNames).not.toContain(legacy);
    for (const [pool, p] of pools) expect(p.names.length, pool).toBeGreaterThan(0);
  });

  it('a name has one address, derived from the name alone, that no other name has and no temporary root holds', () => {
    const urls = allNames.map((n) => driverAddress(n).url);
    expect(new Set(urls).size).toBe(allNames.length);
    for (const n of allNames) {
      const a = driverAddress(n);
      expect(driverAddress(n)).toEqual(a);
      expect(a.url.includes(tmpdir()), a.url).toBe(false);
      if (a.kind === 'socket') expect(a).toMatchObject({ socket: join(PLUGIN_DIR, `${n}.sock`), spec: null, tcp: null });
      if (a.kind === 'spec-unix') expect(a).toMatchObject({ socket: join(SPEC_SOCKET_DIR, `${n}.sock`), spec: join(SPEC_DIR, `${n}.spec`), url: `unix://${a.socket}` });
      if (a.kind === 'spec-tcp') expect(a).toMatchObject({ socket: null, spec: join(SPEC_DIR, `${n}.spec`), url: `tcp://127.0.0.1:${TCP_PORTS[n]}`, tls: null });
      if (a.kind === 'spec-tls') {
        expect(a).toMatchObject({ socket: null, spec: join(SPEC_DIR, `${n}.json`), url: `https://127.0.0.1:${TCP_PORTS[n]}`, tls: { dir: MACHINE_CERT_DIR } });
        // The TLS files are part of what dockerd keeps: fixed too, never in a temporary root.
        expect(specContent(a).includes(tmpdir())).toBe(false);
        expect(JSON.parse(specContent(a))).toEqual({
          Name: n, Addr: a.url, TLSConfig: { InsecureSkipVerify: false, CAFile: a.tls!.ca, CertFile: a.tls!.client.cert, KeyFile: a.tls!.client.key },
        });
      } else {
        expect(a.tls).toBeNull();
      }
      // sun_path holds 107 bytes and a NUL.
      if (a.socket) expect(Buffer.byteLength(a.socket)).toBeLessThan(108);
    }
  });

  it('spec-file sockets live outside /run/docker/plugins, so dockerd never finds them under a second name', () => {
    expect(SPEC_SOCKET_DIR.startsWith(`${PLUGIN_DIR}/`)).toBe(false);
  });

  it('the names a TLS name lends its address to are in no pool and no legacy list', () => {
    for (const n of DRIVER_POOLS.dockerTls.names) {
      for (const alias of Object.values(refusedTlsNames(n))) {
        expect(allNames).not.toContain(alias);
        expect(LEGACY_DRIVER_NAMES as readonly string[]).not.toContain(alias);
      }
    }
  });

  it('managed plugin names are distinct, none is a legacy (driver or plugin) name, and each has its own lock', () => {
    expect(new Set(MANAGED_PLUGIN_NAMES).size).toBe(MANAGED_PLUGIN_NAMES.length);
    for (const n of MANAGED_PLUGIN_NAMES) {
      expect(allNames).not.toContain(n);
      expect(LEGACY_MANAGED_PLUGIN_NAMES as readonly string[]).not.toContain(n);
      expect(n).toMatch(/^berth-test\/[a-z0-9-]+:[a-z0-9]+$/);
    }
  });

  it('TCP ports (plain and TLS) are distinct, below the ephemeral range, and not the legacy berth-tcp0 port', () => {
    const tcpNames = pools.filter(([, p]) => p.kind === 'spec-tcp' || p.kind === 'spec-tls').flatMap(([, p]) => p.names);
    const ports = tcpNames.map((n) => TCP_PORTS[n]);
    expect(ports.every((p) => Number.isInteger(p) && p! > 1024 && p! < 32768)).toBe(true);
    expect(new Set(ports).size).toBe(ports.length);
    expect(ports).not.toContain(LEGACY_TCP_PORT);
    expect(Object.keys(TCP_PORTS).sort()).toEqual([...tcpNames].sort());
  });

  it('an unknown name has no address', () => {
    expect(() => driverAddress('berth-it0')).toThrow(/not a test driver name/);
  });

  it('a dial error names what it means: a test driver whose berth is gone, or an address cached from elsewhere', () => {
    const sock = driverAddress(DRIVER_POOLS.docker.names[0]).socket!;
    expect(explainDial(`dial unix ${sock}: connect: no such file or directory`)).toContain(`test driver ${DRIVER_POOLS.docker.names[0]}: its berth is not running`);
    expect(explainDial('dial unix /tmp/berth-dvdcli-x/run/docker.sock: connect: no such file or directory')).toMatch(/no test driver's address.*restart dockerd/);
    expect(explainDial('no such volume')).toBe('');
  });
});

describe('whyBlocked: what holds a name\'s address', () => {
  const servers: Server[] = [];
  const dirs: string[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const listen = (s: Server, ...args: unknown[]) => new Promise<void>((r) => (s.listen as (...a: unknown[]) => void)(...args, r));

  it('names the process listening on the port (here: this one)', async () => {
    const s = createServer();
    servers.push(s);
    await listen(s, 0, '127.0.0.1');
    const port = (s.address() as AddressInfo).port;
    const why = await whyBlocked({ socket: null, tcp: `127.0.0.1:${port}`, spec: null });
    expect(why).toContain(`port ${port} is taken by pid ${process.pid} (`);
  });

  it('refuses a socket something answers on, removes a stale one and a stale spec file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-drivers-'));
    dirs.push(dir);
    const live = join(dir, 'live.sock');
    const s = createServer();
    servers.push(s);
    await listen(s, live);
    expect(await whyBlocked({ socket: live, tcp: null, spec: null })).toMatch(/something still serves .*live\.sock/);

    // A socket file nobody listens on, as kill -9 leaves one (a bound, never listening socket).
    const stale = join(dir, 'stale.sock');
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
    expect(statSync(stale).isSocket()).toBe(true);
    const spec = join(dir, 'x.spec');
    writeFileSync(spec, 'unix:///nowhere\n');
    expect(await whyBlocked({ socket: stale, tcp: null, spec })).toBeNull();
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(spec)).toBe(false);
  });
});

describe('dockerdReaches: the proof a suite gets before it uses a name', () => {
  it('passes a name dockerd reaches at its address; refuses one dockerd has cached at another, naming it, and remembers', async () => {
    // A name of this test alone (not in any pool), first served at one fixed socket, then
    // looked for at another: what a name served elsewhere by something else looks like.
    const name = 'berth-test-probe-moved';
    const lock = await acquireLock(`driver-${name}`, 120_000);
    try {
      const at = (file: string): DriverAddress => {
        const socket = join(SPEC_SOCKET_DIR, file);
        return { name, kind: 'spec-unix', socket, tcp: null, spec: join(SPEC_DIR, `${name}.spec`), url: `unix://${socket}`, tls: null };
      };
      const first = at(`${name}.first.sock`);
      expect(await dockerdReaches(first)).toBeNull(); // the address dockerd has (or now takes) for the name
      const moved = at(`${name}.sock`);
      const why = await dockerdReaches(moved);
      expect(why).toContain(`dockerd does not reach it at ${moved.url} but dials ${first.socket}`);
      expect(why).toContain('restart dockerd');
      const t0 = Date.now();
      expect(await dockerdReaches(moved)).toBe(why); // remembered for this dockerd: no second round of retries
      expect(Date.now() - t0).toBeLessThan(5_000);
      for (const p of [first.socket!, moved.socket!, first.spec!]) expect(existsSync(p), p).toBe(false);
    } finally {
      await lock.release();
    }
  });
});
