// The Docker volume plugin frontend against a real Docker engine and a real berth daemon
// (dist/berth.js) with `dir` and `loop` backends. Each test holds a driver name of this
// suite's own pool, always served at its one socket /run/docker/plugins/<driver>.sock
// (test/helpers/docker-drivers.ts), plus its own state root and volume names; cleanup removes
// containers and volumes, stops berth, removes the socket and sweeps mounts and loop devices
// even when a test fails.
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, dockerRun, TEST_IMAGE, listDriverVolumes, uniqueName, waitFor } from '../helpers/docker.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { leftovers, useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
// The engine is up and the image built before any suite runs (test/helpers/global-setup.ts).
const image = TEST_IMAGE;

interface Env {
  readonly root: TmpRoot;
  readonly berth: TestDaemon;
  readonly driver: string;
  /** The driver's plugin socket (its one address). */
  readonly socket: string;
  /** Containers to remove in cleanup (also the ones started with --rm, in case they hang). */
  readonly containers: string[];
}

/** A berth daemon serving Docker on its own driver name; `loop` is the default backend. */
async function setup(label: string): Promise<Env> {
  const root = roots.create(`docker-${label}`);
  // Cleanup runs last-in first-out: containers and volumes first (berth must still
  // answer), then the daemon stops (registered by startTestDaemon), then the name and
  // whatever is left at its socket go.
  const held = await acquireDriver('docker');
  root.defer(held.release);
  const { driver } = held;
  const socket = held.socket!;
  const containers: string[] = [];
  const berth = await startTestDaemon(root, {
    defaultBackend: 'loop',
    backends: { local: { driver: 'dir' }, loop: { driver: 'loop' } },
    config: { docker: { enabled: true, driverName: driver, socket } },
  });
  root.defer(() => cleanupDocker({
    driver,
    containers,
    stopped: berth.pid() === null,
    // A test that failed half-way may leave a non-Docker consumer holding a volume.
    release: (v) => berth.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
      if (e.kind !== 'NotFound') throw e;
    }),
  }));
  return { root, berth, driver, socket, containers };
}

function containerName(env: Env, prefix = 'c'): string {
  const n = uniqueName(`berth-${prefix}`);
  env.containers.push(n);
  return n;
}

/** `docker run --rm` with a name we can force-remove in cleanup; returns stdout. */
async function run(env: Env, volume: string, script: string, extra: string[] = []): Promise<string> {
  return docker(['run', '--network', 'none', '--rm', '--name', containerName(env), ...extra, '-v', `${volume}:/data`, image, 'sh', '-c', script]);
}

async function inspect(name: string): Promise<Record<string, any>> {
  return (JSON.parse(await docker(['volume', 'inspect', name])) as Record<string, any>[])[0]!;
}

describe('docker volume plugin with a real Docker engine', () => {
  it('done-when: create xfs 512MiB, write in one container, restart berth, read in another', async () => {
    const env = await setup('done');
    const v1 = uniqueName('v1');
    await docker(['volume', 'create', '-d', env.driver, '-o', 'size=512MiB', '-o', 'fs=xfs', v1]);
    await run(env, v1, 'echo hi > /data/f');

    await env.berth.stop();
    await env.berth.start();

    expect(await run(env, v1, 'cat /data/f')).toBe('hi');
    const info = await inspect(v1);
    expect(info.Driver).toBe(env.driver);
    expect(info.Status).toMatchObject({ backend: 'loop', fs: 'xfs', size: '512MiB', mounts: 0 });

    await docker(['volume', 'rm', v1]);
    expect(await listDriverVolumes(env.driver)).toEqual([]);
    expect(leftovers(env.root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('creates ext4 and xfs on loop and dir volumes with options; ls, inspect, and a new volume looks empty', async () => {
    const env = await setup('opts');
    const ext4 = uniqueName('ext4');
    const xfs = uniqueName('xfs');
    const dir = uniqueName('dir');
    await docker(['volume', 'create', '-d', env.driver, '-o', 'backend=loop', '-o', 'size=64MiB', '-o', 'fs=ext4', ext4]);
    await docker(['volume', 'create', '-d', env.driver, '-o', 'size=320MiB', '-o', 'fs=xfs', xfs]);
    await docker(['volume', 'create', '-d', env.driver, '-o', 'backend=local', '-o', 'label.team=storage', dir]);

    expect((await listDriverVolumes(env.driver)).sort()).toEqual([dir, ext4, xfs].sort());

    const e = await inspect(ext4);
    expect(e).toMatchObject({ Name: ext4, Driver: env.driver, Scope: 'local', Options: { backend: 'loop', size: '64MiB', fs: 'ext4' } });
    expect(e.Status).toMatchObject({ backend: 'loop', fs: 'ext4', sizeBytes: 64 * 2 ** 20, mode: 'filesystem', mounts: 0 });
    expect(e.CreatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect((await inspect(dir)).Status).toMatchObject({ backend: 'local', fs: 'none', labels: { team: 'storage' } });

    // No lost+found at the top; the size is the filesystem's (df inside the container).
    expect(await run(env, ext4, 'ls -A /data; echo end')).toBe('end');
    const kb = Number((await run(env, ext4, "df -k /data | tail -1 | sed 's/  */ /g' | cut -d' ' -f2")).trim());
    expect(kb).toBeGreaterThan(40 * 1024);
    expect(kb).toBeLessThanOrEqual(64 * 1024);
    expect(await run(env, xfs, 'echo x > /data/y && cat /data/y')).toBe('x');
    expect(await run(env, dir, 'echo d > /data/z && cat /data/z')).toBe('d');

    for (const v of [ext4, xfs, dir]) await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(env.driver)).toEqual([]);
    expect(leftovers(env.root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('shares one volume between two running containers; rm is refused while in use, by Docker and by berth', async () => {
    const env = await setup('share');
    const v = uniqueName('shared');
    await docker(['volume', 'create', '-d', env.driver, '-o', 'size=64MiB', v]);

    // c1 keeps the volume mounted in the background.
    const c1 = containerName(env, 'bg');
    await docker(['run', '--network', 'none', '-d', '--name', c1, '-v', `${v}:/data`, image, 'sh', '-c', 'echo one > /data/a; exec sleep 600']);
    await waitForFile(env, v, 'a');
    // c2 runs at the same time, sees c1's data and writes its own.
    expect(await run(env, v, 'cat /data/a; echo two > /data/b')).toBe('one');
    // Docker unmounts c2 as it exits; c1's reference keeps the volume mounted.
    await waitForMounts(env, v, 1);
    let vol = await env.berth.client.inspectVolume(v);
    expect(vol.mounts[0]!.consumer).toMatch(/^docker:[0-9a-f]{64}$/);
    expect(vol.path).not.toBeNull();
    const shown = await inspect(v);
    expect(shown.Mountpoint).toBe(vol.path);
    // loop volumes are attached implicitly while mounted; Get shows the device.
    expect(shown.Status.mounts).toBe(1);
    expect(shown.Status.attachments).toEqual([{ node: 'test-node', device: expect.stringMatching(/^\/dev\/loop\d+$/), readOnly: false, implicit: true }]);

    // Docker refuses by itself while c1 uses the volume.
    const refusedByDocker = await dockerRun(['volume', 'rm', v]);
    expect(refusedByDocker.code).not.toBe(0);
    expect(refusedByDocker.stderr).toMatch(/in use/i);

    // Another consumer (not Docker) holds it too: after c1 is gone berth itself refuses.
    await env.berth.client.mount(v, { consumer: 'admin:test-holder' });
    await docker(['rm', '-f', c1]);
    vol = await env.berth.client.inspectVolume(v);
    expect(vol.mounts.map((m) => m.consumer)).toEqual(['admin:test-holder']);
    const refusedByBerth = await dockerRun(['volume', 'rm', v]);
    expect(refusedByBerth.code).not.toBe(0);
    expect(refusedByBerth.stderr).toContain(`remove ${v}`);
    expect(refusedByBerth.stderr).toMatch(/mounted by admin:test-holder.*stop the containers or other consumers/);
    expect(await listDriverVolumes(env.driver)).toEqual([v]);

    await env.berth.client.unmount(v, { consumer: 'admin:test-holder' });
    expect((await env.berth.client.inspectVolume(v)).path).toBeNull();
    await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(env.driver)).toEqual([]);
    expect(leftovers(env.root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('keeps a running container\'s mount across a berth crash (kill -9) and releases it when the container exits', async () => {
    const env = await setup('restart');
    const v = uniqueName('keep');
    await docker(['volume', 'create', '-d', env.driver, '-o', 'size=64MiB', v]);
    const c1 = containerName(env, 'bg');
    await docker(['run', '--network', 'none', '-d', '--name', c1, '-v', `${v}:/data`, image, 'sh', '-c', 'exec sleep 600']);
    await waitForMounts(env, v, 1);

    // kill -9 leaves the plugin socket behind; the restarted daemon replaces it.
    await env.berth.kill('SIGKILL');
    expect(statSync(env.socket).isSocket()).toBe(true);
    await env.berth.start();

    // berth remembered c1's reference: the volume is still mounted and written through.
    expect((await env.berth.client.inspectVolume(v)).mounts).toHaveLength(1);
    expect(await run(env, v, 'echo after > /data/r && cat /data/r')).toBe('after');
    await docker(['rm', '-f', c1]);
    await waitForMounts(env, v, 0);
    expect((await env.berth.client.inspectVolume(v)).path).toBeNull();
    await docker(['volume', 'rm', v]);
    expect(leftovers(env.root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('surfaces invalid options as a Docker CLI error naming the option, creating nothing', async () => {
    const env = await setup('invalid');
    const v = uniqueName('bad');
    const unknown = await dockerRun(['volume', 'create', '-d', env.driver, '-o', 'bogus=1', v]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('bogus');

    const size = await dockerRun(['volume', 'create', '-d', env.driver, '-o', 'size=12parsecs', v]);
    expect(size.code).not.toBe(0);
    expect(size.stderr).toContain('opts.size');

    const fs = await dockerRun(['volume', 'create', '-d', env.driver, '-o', 'fs=ntfs', v]);
    expect(fs.code).not.toBe(0);
    expect(fs.stderr).toContain('opts.fs');

    expect(await listDriverVolumes(env.driver)).toEqual([]);
    expect(await env.berth.client.listVolumes()).toEqual([]);
  });
});

/** Polls until the file exists in the volume (seen through berth's mounted path). */
async function waitForFile(env: Env, v: string, file: string): Promise<void> {
  await waitFor(`${file} in ${v}`, async () => {
    const r = await dockerRun(['run', '--network', 'none', '--rm', '--name', containerName(env, 'probe'), '-v', `${v}:/data`, image, 'test', '-e', `/data/${file}`]);
    return r.code === 0;
  });
}

async function waitForMounts(env: Env, v: string, n: number): Promise<void> {
  await waitFor(`${n} mount(s) of ${v}`, async () => (await env.berth.client.inspectVolume(v)).mounts.length === n);
}
