// Podman (Debian's 4.3) as a caller of berth's Docker volume plugin API, configured the way
// the README tells users: containers.conf [engine.volume_plugins] naming berth's Docker
// socket. Podman's quirks (podman-volume-plugin.md): it calls Mount only on its own 0->1 and
// Unmount on 1->0, always with one fixed pseudo container id, never calls Capabilities, and
// sees volumes created elsewhere only after `podman volume reload`. Each test has its own
// berth daemon, Podman root and config (test/helpers/podman.ts). The first test's driver
// name lives only in that Podman's containers.conf, with berth's socket in the test root:
// Podman keeps nothing between commands and dockerd never sees it. Where Docker shares a
// volume with Podman, the name comes from this suite's pool with its one fixed socket in
// /run/docker/plugins (test/helpers/docker-drivers.ts), proven reachable by dockerd first.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startTestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, TEST_IMAGE, uniqueName } from '../helpers/docker.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { createPodman } from '../helpers/podman.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
/** The one mount id Podman sends for every container (libpod/plugin/volume_api.go). */
const PODMAN_MOUNT_ID = createHash('sha256').update('placeholder\n').digest('hex');

const consumers = async (d: Awaited<ReturnType<typeof startTestDaemon>>, v: string) =>
  (await d.client.inspectVolume(v)).mounts.map((m) => m.consumer).sort();

describe('Podman with berth as its volume plugin', () => {
  it('creates with options, writes in one container, reads in a second, removes', async () => {
    const root = roots.create('podman');
    const berth = await startTestDaemon(root, { docker: true, defaultBackend: 'loop' });
    const pm = await createPodman(root, { plugins: { 'berth-pm': berth.dockerSocket } });
    const v = uniqueName('pmv');

    await pm.run(['volume', 'create', '--driver', 'berth-pm', '--opt', 'size=64MiB', '--opt', 'fs=ext4', '--opt', 'label.app=pm', v]);
    const vol = await berth.client.inspectVolume(v);
    expect(vol).toMatchObject({ backend: 'loop', fsType: 'ext4', sizeBytes: 64 * 2 ** 20, labels: { app: 'pm' } });
    const shown = JSON.parse(await pm.run(['volume', 'inspect', v])) as Array<Record<string, any>>;
    expect(shown[0]).toMatchObject({ Name: v, Driver: 'berth-pm' });

    await pm.run(['run', '--rm', '--network', 'none', '-v', `${v}:/data`, pm.image, 'sh', '-c', 'echo from-podman > /data/f']);
    // Podman's cleanup process unmounted it (1->0) once the container exited.
    expect(await consumers(berth, v)).toEqual([]);
    expect(await pm.run(['run', '--rm', '--network', 'none', '-v', `${v}:/data`, pm.image, 'cat', '/data/f'])).toBe('from-podman');
    expect(await consumers(berth, v)).toEqual([]);

    await pm.run(['volume', 'rm', v]);
    await expect(berth.client.inspectVolume(v)).rejects.toMatchObject({ kind: 'NotFound' });
    expect(JSON.parse(await pm.run(['volume', 'ls', '--format', 'json']))).toEqual([]);
    // A refused create is an error in Podman too (berth answers errors with HTTP 500: Podman
    // ignores Err in a 200 reply and would list a volume that does not exist), naming the option.
    const bad = uniqueName('bad');
    const refused = await pm.exec(['volume', 'create', '--driver', 'berth-pm', '--opt', 'size=64MiB', '--opt', 'fs=xfs', bad]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/opts\.size: xfs needs at least 300MiB/);
    expect(JSON.parse(await pm.run(['volume', 'ls', '--format', 'json']))).toEqual([]);
    expect(await berth.client.listVolumes()).toEqual([]);
    expect(leftovers(root.dir)).toMatchObject({ loops: [] });
  });

  it('shares a volume with Docker with right reference counts; `podman volume reload` lists volumes made elsewhere', async () => {
    const root = roots.create('podman-docker');
    const held = await acquireDriver('podman');
    root.defer(held.release); // first registered: runs after the daemon has stopped
    const { driver } = held;
    const socket = held.socket!;
    const containers: string[] = [];
    const berth = await startTestDaemon(root, {
      defaultBackend: 'loop',
      config: { docker: { enabled: true, driverName: driver, socket } },
    });
    root.defer(() => cleanupDocker({ driver, containers, stopped: berth.pid() === null }));
    const pm = await createPodman(root, { plugins: { [driver]: socket } });

    // Made through Docker and through berth's own CLI: Podman sees them after a reload.
    const v = uniqueName('shared');
    await docker(['volume', 'create', '-d', driver, '-o', 'size=64MiB', v]);
    const cli = uniqueName('fromcli');
    const made = await berth.berth(['volume', 'create', cli, '--backend', 'local']);
    expect(made.code, made.stderr).toBe(0);
    const reload = await pm.run(['volume', 'reload']);
    expect(reload).toContain(v);
    expect(reload).toContain(cli);
    const listed = (JSON.parse(await pm.run(['volume', 'ls', '--format', 'json'])) as Array<{ Name: string; Driver: string }>)
      .map((x) => `${x.Driver}/${x.Name}`).sort();
    expect(listed).toEqual([`${driver}/${cli}`, `${driver}/${v}`].sort());

    // Docker holds it: one reference per Docker container.
    const dc = uniqueName('berth-pmd');
    containers.push(dc);
    await docker(['run', '-d', '--network', 'none', '--name', dc, '-v', `${v}:/data`, TEST_IMAGE, 'sh', '-c', 'echo docker > /data/d; exec sleep 600']);
    const dockerRef = (await consumers(berth, v))[0]!;
    expect(dockerRef).toMatch(/^docker:[0-9a-f]{64}$/);

    // Two Podman containers: Podman mounts once (0->1) with its fixed id, and keeps count itself.
    const p1 = await pm.run(['run', '-d', '--network', 'none', '-v', `${v}:/data`, pm.image, 'sleep', '600']);
    const p2 = await pm.run(['run', '-d', '--network', 'none', '-v', `${v}:/data`, pm.image, 'sleep', '600']);
    const podmanRef = `docker:${PODMAN_MOUNT_ID}`;
    expect(await consumers(berth, v)).toEqual([dockerRef, podmanRef].sort());
    expect(await pm.run(['exec', p2, 'cat', '/data/d'])).toBe('docker');
    await pm.run(['exec', p1, 'sh', '-c', 'echo podman > /data/p']);
    expect(await docker(['exec', dc, 'cat', '/data/p'])).toBe('podman');

    // Podman's first container goes: Podman still counts one, berth keeps its reference.
    await pm.run(['rm', '--force', '--time', '0', p1]);
    expect(await consumers(berth, v)).toEqual([dockerRef, podmanRef].sort());
    // The last one goes: Podman unmounts (1->0); Docker's reference stays, the volume stays mounted.
    await pm.run(['rm', '--force', '--time', '0', p2]);
    expect(await consumers(berth, v)).toEqual([dockerRef]);
    expect((await berth.client.inspectVolume(v)).path).not.toBeNull();
    expect(await docker(['exec', dc, 'cat', '/data/p'])).toBe('podman');

    // Docker's container goes: nothing holds it, berth unmounts; Podman removes it for everyone.
    await docker(['rm', '--force', dc]);
    expect(await consumers(berth, v)).toEqual([]);
    expect((await berth.client.inspectVolume(v)).path).toBeNull();
    await pm.run(['volume', 'rm', v, cli]);
    // Podman removed it behind Docker's back, and Docker keeps the name in its own metadata: once
    // this suite's driver is gone, every unfiltered `docker volume ls` would wait ~15 s on it,
    // and `docker volume rm -f` could no longer drop it. Drop it while berth still answers.
    await docker(['volume', 'rm', '-f', v]);
    expect(await berth.client.listVolumes()).toEqual([]);
    expect(await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`])).toBe('');
  });
});
