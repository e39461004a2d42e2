// The Docker plugin frontend's TCP listener with a real Docker engine and a real berth
// daemon (dist/berth.js): berth's unix socket lives in the test's temporary root, not in
// /run/docker/plugins, so Docker (and dvdcli) can find the driver only through the spec
// file berth writes into /etc/docker/plugins (the one directory dockerd reads). The driver
// name comes from this suite's pool with its one fixed port (test/helpers/docker-drivers.ts:
// dockerd dials a name at the address it first found it at until it restarts); cleanup
// removes containers, volumes, the daemon and the spec file even when a test fails.
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execFile } from '../helpers/callers.js';
import { REPO_ROOT, runBerth, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, TEST_IMAGE, listDriverVolumes, uniqueName } from '../helpers/docker.js';
import { acquireDriver, PLUGIN_DIR, SPEC_DIR } from '../helpers/docker-drivers.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
// The engine is up and the image built before any suite runs (test/helpers/global-setup.ts).
const image = TEST_IMAGE;

interface Env {
  readonly root: TmpRoot;
  readonly berth: TestDaemon;
  readonly driver: string;
  readonly tcp: string;
  readonly spec: string;
  readonly containers: string[];
}

/** A berth serving Docker on TCP + spec file only; `loop` is the default backend. */
async function setup(label: string): Promise<Env> {
  const root = roots.create(`docker-tcp-${label}`);
  // Registered before the daemon, so it runs after the daemon stopped (LIFO), failed or not,
  // and removes the spec file if the daemon did not.
  const held = await acquireDriver('dockerTcp');
  root.defer(held.release);
  const { driver } = held;
  const tcp = held.tcp!;
  const spec = held.spec!;
  const containers: string[] = [];
  const berth = await startTestDaemon(root, {
    defaultBackend: 'loop',
    config: { docker: { enabled: true, driverName: driver, socket: root.path('run', 'plugin', `${driver}.sock`), tcp, specDir: SPEC_DIR } },
  });
  root.defer(() => cleanupDocker({
    driver,
    containers,
    stopped: berth.pid() === null,
    release: (v) => berth.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
      if (e.kind !== 'NotFound') throw e;
    }),
  }));
  return { root, berth, driver, tcp, spec, containers };
}

function run(env: Env, volume: string, script: string): Promise<string> {
  const name = uniqueName('berth-tcp');
  env.containers.push(name);
  return docker(['run', '--rm', '--network', 'none', '--name', name, '-v', `${volume}:/data`, image, 'sh', '-c', script]);
}

describe('Docker volume plugin over TCP, announced by a spec file', () => {
  it('docker volume create / run / run / rm reach berth through the spec file alone; stop removes the spec file', async () => {
    const env = await setup('e2e');
    expect(readFileSync(env.spec, 'utf8')).toBe(`tcp://${env.tcp}\n`);
    expect(existsSync(join(PLUGIN_DIR, `${env.driver}.sock`))).toBe(false); // nothing in /run/docker/plugins
    expect(existsSync(env.berth.root.path('run', 'plugin', `${env.driver}.sock`))).toBe(true);
    // `berth status` tells the operator where Docker is sent.
    expect((await env.berth.client.status()).daemon?.docker).toMatchObject({ driverName: env.driver, tcp: `tcp://${env.tcp}` });

    const v = uniqueName('tcpv');
    await docker(['volume', 'create', '-d', env.driver, '-o', 'size=64MiB', v]);
    await run(env, v, 'echo hi > /data/f');
    expect(await run(env, v, 'cat /data/f')).toBe('hi');

    const info = (JSON.parse(await docker(['volume', 'inspect', v])) as Array<Record<string, any>>)[0]!;
    expect(info.Driver).toBe(env.driver);
    expect(info.Status).toMatchObject({ backend: 'loop' });
    const vol = await env.berth.client.inspectVolume(v);
    expect(vol.sizeBytes).toBe(64 * 1024 * 1024);
    expect(vol.mounts).toEqual([]); // both containers' mounts were released

    await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(env.driver)).toEqual([]);
    await expect(env.berth.client.inspectVolume(v)).rejects.toMatchObject({ kind: 'NotFound' });

    expect(await env.berth.stop()).toBe(0);
    expect(existsSync(env.spec)).toBe(false);
    expect(existsSync(env.berth.root.path('run', 'plugin', `${env.driver}.sock`))).toBe(false);
  });

  it('dvdcli mounts and unmounts through the spec file over TCP', async () => {
    const env = await setup('dvdcli');
    mkdirSync(env.root.path('bin'));
    const dvdcli = env.root.path('bin', 'dvdcli');
    symlinkSync(join(REPO_ROOT, 'dist', 'dvdcli.cjs'), dvdcli);
    const name = uniqueName('mesos-tcp');
    const args = (cmd: string) => [cmd, `--volumedriver=${env.driver}`, `--volumename=${name}`];

    const mounted = await execFile(dvdcli, [...args('mount'), '--volumeopts=size=64MiB']);
    expect(mounted.code, mounted.stderr).toBe(0);
    const path = mounted.stdout.trim();
    writeFileSync(join(path, 'f'), 'over tcp');
    const vol = await env.berth.client.inspectVolume(name);
    expect(vol.mounts.map((m) => m.consumer)).toEqual(['dvdcli']);
    expect(vol.path).toBe(path);

    const un = await execFile(dvdcli, args('unmount'));
    expect(un.code, un.stderr).toBe(0);
    const after = await env.berth.client.inspectVolume(name);
    expect(after.mounts).toEqual([]);
    expect(after.path).toBeNull();
    await env.berth.client.removeVolume(name);

    await env.berth.stop();
    expect(existsSync(env.spec)).toBe(false);
    // With berth gone and no socket in /run/docker/plugins, dvdcli finds no plugin.
    const gone = await execFile(dvdcli, args('unmount'), { ...process.env, BERTH_DVDCLI_PLUGIN_WAIT: '0' } as Record<string, string>);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/plugin not found/);
  });

  it('refuses a bad docker.tcp, or a non-loopback one without TLS, with exit 1 naming the key, writing no spec file', async () => {
    const root = roots.create('docker-tcp-bad');
    const specDir = root.path('plugins');
    const base = ['serve', '--state-root', root.path('state'), '--socket', root.path('a.sock'), '--no-csi', '--docker-socket', root.path('d.sock')];
    const serve = (tcp: string, extra: Record<string, string> = {}) =>
      runBerth(base, { env: { BERTH_DOCKER_TCP: tcp, BERTH_DOCKER_SPEC_DIR: specDir, ...extra } });

    const malformed = await serve('127.0.0.1');
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/cannot start: InvalidArgument: docker\.tcp: must be "host:port"/);

    const badPort = await serve('127.0.0.1:70000');
    expect(badPort.code).toBe(1);
    expect(badPort.stderr).toMatch(/docker\.tcp: the port must be 0-65535/);

    const remote = await serve('0.0.0.0:0');
    expect(remote.code).toBe(1);
    expect(remote.stderr).toMatch(/cannot start: InvalidArgument: docker\.tls: docker\.tcp "0\.0\.0\.0:0" is not a loopback address.*requires mutual TLS: set docker\.tls\.ca/);

    // The removed opt-out is explained, not silently ignored.
    const optOut = await serve('0.0.0.0:0', { BERTH_DOCKER_TCP_ALLOW_REMOTE: 'true' });
    expect(optOut.code).toBe(1);
    expect(optOut.stderr).toMatch(/BERTH_DOCKER_TCP_ALLOW_REMOTE: docker\.tcpAllowRemote was removed/);

    // A port something else holds: refused at start, naming the key, with nothing left behind.
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    root.defer(() => new Promise((r) => busy.close(r)));
    const taken = await serve(`127.0.0.1:${(busy.address() as AddressInfo).port}`);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/cannot start: FailedPrecondition: docker\.tcp: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);

    expect(existsSync(join(specDir, 'berth.spec'))).toBe(false);
    expect(existsSync(root.path('a.sock'))).toBe(false);
    expect(existsSync(root.path('d.sock'))).toBe(false);
  });
});
