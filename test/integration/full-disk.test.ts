/**
 * A full state root against a real daemon: the state root is a 64 MiB ext4 image mounted
 * under the test root (loop and dir volumes live on it too), filled to the last block. New
 * work is refused with ResourceExhausted naming the state root, through the admin API and
 * the Docker plugin protocol; what frees resources (unmount, Docker Unmount, rm) still
 * works; kill -9 and a restart on the full disk give a daemon that serves reads; once space
 * is back everything works again. After every step every record matches the kernel: a
 * mounted loop volume's path is a mount of its own image's loop device, an unmounted one has
 * neither mount nor device, a dir volume's recorded path exists, and nothing is mounted or
 * attached that no record accounts for.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leftovers, sweep } from '../helpers/cleanup.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { fillFilesystem, mountSmallExt4 } from '../helpers/full-disk.js';
import { raw } from '../helpers/http.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

interface DockerReply { readonly Err?: string; readonly Mountpoint?: string }

/** Every volume's records against the kernel (mountinfo and losetup, read independently of berth). */
async function expectRecordsMatchKernel(d: TestDaemon): Promise<void> {
  const state = d.stateRoot;
  const volumes = await d.client.listVolumes();
  const kernel = leftovers(state);
  const mounts = kernel.mounts.filter((m) => m !== state);
  for (const v of volumes) {
    const mountPoint = `${state}/mounts/${v.id}`;
    const seen = {
      volume: v.name,
      mounted: mounts.includes(mountPoint),
      devices: kernel.loops.filter((l) => l.backingFile === `${state}/backends/loop/${v.id}.img`).length,
      path: v.path,
      pathExists: v.path !== null && existsSync(v.path),
    };
    if (v.backend === 'loop') {
      const inUse = v.mounts.length > 0;
      expect(seen).toEqual({
        volume: v.name, mounted: inUse, devices: inUse || v.attachments.length > 0 ? 1 : 0,
        path: inUse ? `${mountPoint}/data` : null, pathExists: inUse,
      });
    } else {
      expect(seen).toEqual({ volume: v.name, mounted: false, devices: 0, path: v.mounts.length ? v.path : null, pathExists: v.mounts.length > 0 });
    }
  }
  // Nothing mounted or attached that no record accounts for.
  const ids = new Set(volumes.map((v) => v.id));
  expect(mounts.filter((m) => !ids.has(basename(m)))).toEqual([]);
  expect(kernel.loops.filter((l) => !ids.has(basename(l.backingFile, '.img')))).toEqual([]);
}

describe('a full state root', () => {
  it('refuses new work clearly, still frees resources, restarts after kill -9 and keeps every record true to the kernel', async () => {
    const root = roots.create('fulldisk');
    const state = root.path('state');
    mountSmallExt4(root, state, 64);
    // Runs after the daemon's stop (LIFO): volume mounts and devices first, then the root's sweep takes the state fs.
    root.defer(() => sweep(state));
    const d = await startTestDaemon(root, { docker: true });
    const admin = { socket: d.socket };
    const docker = async (call: string, body: object): Promise<DockerReply> =>
      (await raw({ socket: d.dockerSocket }, 'POST', `/VolumeDriver.${call}`, body)).json as DockerReply;

    // While there is room: loop and dir volumes, mounted through the admin API and Docker.
    await d.client.createVolume({ name: 'l1', backend: 'loop', size: '16MiB' });
    await d.client.createVolume({ name: 'l2', backend: 'loop', size: '16MiB' });
    await d.client.createVolume({ name: 'd1' });
    await d.client.createVolume({ name: 'spare' });
    expect(await docker('Create', { Name: 'dk', Opts: { backend: 'loop', size: '16MiB' } })).toEqual({ Err: '' });
    const l1 = await d.client.mount('l1', { consumer: 'a' });
    const l2 = await d.client.mount('l2', { consumer: 'b' });
    const d1 = await d.client.mount('d1', { consumer: 'a' });
    const dk = await docker('Mount', { Name: 'dk', ID: 'c1' });
    for (const p of [l1.path, l2.path, d1.path, dk.Mountpoint!]) writeFileSync(join(p, 'f'), 'data');
    await expectRecordsMatchKernel(d);

    // Written through to the images first: a sparse image cannot take new blocks on a full
    // disk, and the kernel drops what it cannot write back (as for any thin image).
    execFileSync('sync');
    const filler = join(state, 'filler');
    expect(fillFilesystem(filler)).toBeGreaterThan(0);

    // Nothing new starts: ResourceExhausted naming the state root, and nothing changes.
    const created = await raw(admin, 'POST', '/v1/volumes', { name: 'new', backend: 'loop', size: '16MiB' });
    expect({ status: created.status, body: created.json }).toMatchObject({
      status: 507, body: { error: { kind: 'ResourceExhausted', message: expect.stringContaining(`the filesystem holding the state root ${state} is full`) } },
    });
    expect((await raw(admin, 'POST', '/v1/volumes', { name: 'new-dir' })).status).toBe(507);
    expect((await docker('Create', { Name: 'new-dk' })).Err).toMatch(new RegExp(`^no room: .*${state} is full`));
    const mount = await raw(admin, 'POST', '/v1/volumes/spare/mount', { consumer: 'x' });
    expect({ status: mount.status, body: mount.json }).toMatchObject({ status: 507, body: { error: { kind: 'ResourceExhausted' } } });
    expect((await docker('Mount', { Name: 'dk', ID: 'c2' })).Err).toMatch(/^no room: /);
    expect((await d.client.listVolumes()).map((v) => v.name)).toEqual(['d1', 'dk', 'l1', 'l2', 'spare']);
    expect(readdirSync(`${state}/backends/local`).filter((n) => n.startsWith('vol-'))).toHaveLength(2);
    await expectRecordsMatchKernel(d);

    // What frees resources works, and its records are written (the space reserve pays for them).
    await d.client.unmount('l1', { consumer: 'a' });
    expect(await docker('Unmount', { Name: 'dk', ID: 'c1' })).toEqual({ Err: '' });
    await d.client.removeVolume('spare');
    expect(await docker('Remove', { Name: 'dk' })).toEqual({ Err: '' });
    await expectRecordsMatchKernel(d);

    // kill -9, and a start on a disk full to the last block (what rm freed taken again): the
    // daemon starts (the claim writes nothing, the database opens without a -shm file) and
    // serves reads.
    await d.kill();
    fillFilesystem(filler);
    await d.start();
    // The pid file is best-effort: written whole or not at all (ext4 may hand back a block
    // freed before the fill once its journal commits), never a partial leftover.
    const pidFiles = readdirSync(state).filter((n) => n.startsWith('daemon.pid'));
    expect(pidFiles.filter((n) => n !== 'daemon.pid')).toEqual([]);
    if (pidFiles.length) expect(readFileSync(`${state}/daemon.pid`, 'utf8')).toBe(`${d.pid()}\n`);
    else expect(d.logs()).toMatch(/could not write the pid file; running without it/);
    expect((await d.client.listVolumes()).map((v) => v.name)).toEqual(['d1', 'l1', 'l2']);
    expect(await d.client.path('l2')).toBe(l2.path);
    expect((await d.client.inspectVolume('l1')).path).toBeNull();
    await expectRecordsMatchKernel(d);
    // An unmount on the full disk either completes or, if its record could not be written,
    // leaves the mount as recorded: both are checked against the kernel.
    const unmounted = await raw(admin, 'POST', '/v1/volumes/l2/unmount', { consumer: 'b' });
    expect([200, 507]).toContain(unmounted.status);
    await expectRecordsMatchKernel(d);
    expect((await raw(admin, 'POST', '/v1/volumes/l1/mount', { consumer: 'a' })).status).toBe(507);

    // Space is back: everything works again, and every path handed out exists.
    rmSync(filler);
    await d.client.unmount('l2', { consumer: 'b' });
    const again = await d.client.mount('l1', { consumer: 'a' });
    expect(existsSync(join(again.path, 'f'))).toBe(true);
    await d.client.createVolume({ name: 'after', backend: 'loop', size: '16MiB' });
    expect(await docker('Create', { Name: 'dk2', Opts: { backend: 'loop', size: '16MiB' } })).toEqual({ Err: '' });
    const dk2 = await docker('Mount', { Name: 'dk2', ID: 'c3' });
    expect(dk2.Err).toBe('');
    writeFileSync(join(dk2.Mountpoint!, 'f'), 'after');
    expect(await docker('Path', { Name: 'dk2' })).toEqual({ Mountpoint: dk2.Mountpoint, Err: '' });
    await expectRecordsMatchKernel(d);
    expect(existsSync(`${state}/state.db.reserve`)).toBe(true);

    await d.client.unmount('l1', { consumer: 'a' });
    await d.client.unmount('d1', { consumer: 'a' });
    expect(await docker('Unmount', { Name: 'dk2', ID: 'c3' })).toEqual({ Err: '' });
    await expectRecordsMatchKernel(d);
  });
});
