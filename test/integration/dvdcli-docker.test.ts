// dvdcli next to a real Docker engine on the same berth daemon: the Mesos path (dvdcli,
// no mount ID) and a real `docker run -v` container share one volume. dvdcli finds the
// plugin exactly where Docker does (/run/docker/plugins/<driver>.sock, the driver name's one
// address: test/helpers/docker-drivers.ts).
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execFile } from '../helpers/callers.js';
import { REPO_ROOT, startTestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, TEST_IMAGE, listDriverVolumes, uniqueName } from '../helpers/docker.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
// The engine is up and the image built before any suite runs (test/helpers/global-setup.ts).
const image = TEST_IMAGE;

describe('dvdcli and a real Docker engine on one daemon', () => {
  it('a Mesos-mounted volume is in `docker volume ls`; a Docker container keeps it mounted after the single dvdcli unmount', async () => {
    const root = roots.create('dvdcli-docker');
    const held = await acquireDriver('dvdcliDocker');
    root.defer(held.release); // last: after the daemon stopped
    const { driver } = held;
    const containers: string[] = [];
    const d = await startTestDaemon(root, { defaultBackend: 'loop', config: { docker: { enabled: true, driverName: driver, socket: held.socket } } });
    root.defer(() =>
      cleanupDocker({
        driver, containers, stopped: d.pid() === null,
        release: (v) => d.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
          if (e.kind !== 'NotFound') throw e;
        }),
      }),
    );
    mkdirSync(root.path('bin'));
    const dvdcli = root.path('bin', 'dvdcli');
    symlinkSync(join(REPO_ROOT, 'dist', 'dvdcli.cjs'), dvdcli);
    const name = uniqueName('mesos');
    const args = (cmd: string) => [cmd, `--volumedriver=${driver}`, `--volumename=${name}`];

    const first = await execFile(dvdcli, [...args('mount'), '--volumeopts=size=64MiB']);
    expect(first.code, first.stderr).toBe(0);
    const path = first.stdout.trim();
    writeFileSync(join(path, 'from-mesos'), 'hello docker');
    expect(await listDriverVolumes(driver)).toContain(name);

    // dockerd has not seen this name (dvdcli made it): without --volume-driver it would ask
    // every driver it ever met, ~15 s for each whose berth is gone, holding the name's lock.
    const container = uniqueName('berth-dvd');
    containers.push(container);
    await docker(['run', '--network', 'none', '-d', '--name', container, '--volume-driver', driver, '-v', `${name}:/data`, image, 'sleep', '300']);
    const second = await execFile(dvdcli, args('mount'));
    expect(second.stdout).toBe(first.stdout);

    const consumers = (await d.client.inspectVolume(name)).mounts.map((m) => m.consumer);
    expect(consumers).toHaveLength(2);
    expect(consumers).toContain('dvdcli');
    expect(consumers.find((c) => c.startsWith('docker:'))).toMatch(/^docker:[0-9a-f]{64}$/);

    const un = await execFile(dvdcli, args('unmount'));
    expect(un.code, un.stderr).toBe(0);
    expect(await docker(['exec', container, 'cat', '/data/from-mesos'])).toBe('hello docker');
    expect(readFileSync(join(path, 'from-mesos'), 'utf8')).toBe('hello docker');
    expect((await d.client.inspectVolume(name)).mounts.map((m) => m.consumer)).toEqual([consumers.find((c) => c.startsWith('docker:'))]);

    await docker(['rm', '-f', container]);
    const after = await d.client.inspectVolume(name);
    expect(after.mounts).toEqual([]);
    expect(after.path).toBeNull();
  });
});
