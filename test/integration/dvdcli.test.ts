// dvdcli as Mesos runs it: the absolute path of the `dvdcli` found on PATH, `--flag=value`
// argv, stdin closed, the whole trimmed stdout taken as the mount path. It reaches the
// daemon's Docker volume plugin socket through Docker's own discovery (a .spec file under
// /etc/docker/plugins, or a socket under /run/docker/plugins), with real loop volumes.
// dockerd reads the same directories and keeps the first address it finds a name at, so each
// driver name here always points at the same socket (test/helpers/docker-drivers.ts).
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/daemon.js';
import { callerEnv, dockerPluginCall, execFile, mountTable, type ExecResult } from '../helpers/callers.js';
import { createCsiClient } from '../helpers/csi-client.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const uniq = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

/** Puts `dvdcli` on a PATH in the root and resolves it like the isolator's os::which. */
function installDvdcli(root: TmpRoot): string {
  const bin = root.path('bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(join(REPO_ROOT, 'dist', 'dvdcli.cjs'), join(bin, 'dvdcli'));
  return join(bin, 'dvdcli');
}

/**
 * A daemon serving Docker on the fixed socket of a held spec-file driver name, announced by
 * its spec file in /etc/docker/plugins once the daemon listens. Cleanup (LIFO): the spec
 * file, the daemon, then the name.
 */
async function daemonWithPlugin(label: string, csi = false) {
  const root = roots.create(label);
  const held = await acquireDriver('dvdcliSpec');
  root.defer(held.release);
  const d = await startTestDaemon(root, { csi, config: { docker: { enabled: true, driverName: held.driver, socket: held.socket } } });
  await held.announce();
  root.defer(() => rmSync(held.spec!, { force: true })); // before the daemon stops
  return { root, d, dvdcli: installDvdcli(root), driver: held.driver };
}

/** The isolator's mount argv (driver.cpp): always --flag=value, one --volumeopts per option. */
const mesosMount = (dvdcli: string, driver: string, name: string, opts: Record<string, string>, env?: Record<string, string>) =>
  execFile(dvdcli, ['mount', `--volumedriver=${driver}`, `--volumename=${name}`, ...Object.entries(opts).map(([k, v]) => `--volumeopts=${k}=${v}`)], env);
const mesosUnmount = (dvdcli: string, driver: string, name: string) =>
  execFile(dvdcli, ['unmount', `--volumedriver=${driver}`, `--volumename=${name}`]);

const LOG_LINE = /^time="[^"]+" level=(info|warning|error) msg=.* \n$/;

function expectOk(r: ExecResult) {
  expect(r.code, r.stderr).toBe(0);
}

describe('dvdcli (Mesos-style calls)', () => {
  it('two Mesos containers share a volume: the same path, one shared reference, one unmount releases it while a Docker container keeps it mounted', async () => {
    const { root, d, dvdcli, driver } = await daemonWithPlugin('dvdcli-share', true);
    const name = uniq('mesos-vol');
    root.defer(() => d.client.removeVolume(name, { force: true }).catch(() => undefined));

    // Container 1: the volume does not exist yet, dvdcli creates it with the options.
    const first = await mesosMount(dvdcli, driver, name, { size: '64MiB', backend: 'loop' });
    expectOk(first);
    const path = first.stdout.trim();
    expect(first.stdout).toBe(`${path}\n`); // nothing but the path on stdout
    expect(path).toMatch(/^\//);
    expect(first.stderr).toMatch(LOG_LINE);
    expect(first.stderr).toContain(`msg=${JSON.stringify(path)}`);
    const created = await d.client.inspectVolume(name);
    expect(created).toMatchObject({ backend: 'loop', sizeBytes: 64 * 1024 * 1024 });
    expect(created.mounts.map((m) => m.consumer)).toEqual(['dvdcli']);
    writeFileSync(join(path, 'from-mesos'), 'one');

    // A Docker container mounts the same volume with its own ID over the plugin socket.
    const dockerId = randomBytes(32).toString('hex');
    const docker = await dockerPluginCall<{ Mountpoint: string; Err: string }>(d.dockerSocket, 'VolumeDriver.Mount', { Name: name, ID: dockerId });
    expect(docker.Err ?? '').toBe('');
    expect(docker.Mountpoint).toBe(path);

    // Container 2: Mesos runs dvdcli mount again; options are ignored for an existing volume.
    const second = await mesosMount(dvdcli, driver, name, { size: '1GiB' });
    expectOk(second);
    expect(second.stdout).toBe(`${path}\n`);
    expect(readFileSync(join(second.stdout.trim(), 'from-mesos'), 'utf8')).toBe('one');
    expect((await d.client.inspectVolume(name)).mounts.map((m) => m.consumer).sort()).toEqual([`docker:${dockerId}`, 'dvdcli']);

    // Both Mesos containers gone: the isolator sends one unmount.
    const un = await mesosUnmount(dvdcli, driver, name);
    expectOk(un);
    expect(un.stdout).toBe('');
    expect((await d.client.inspectVolume(name)).mounts.map((m) => m.consumer)).toEqual([`docker:${dockerId}`]);
    expect(readFileSync(join(path, 'from-mesos'), 'utf8')).toBe('one'); // still mounted for Docker
    expect((await mountTable()).has(path.replace(/\/data$/, ''))).toBe(true);

    // The volume shows up in Docker's List and in CSI ListVolumes of the same daemon.
    const list = await dockerPluginCall<{ Volumes: Array<{ Name: string; Mountpoint?: string }> }>(d.dockerSocket, 'VolumeDriver.List', {});
    expect(list.Volumes.find((v) => v.Name === name)).toMatchObject({ Name: name, Mountpoint: path });
    const csi = createCsiClient(d.csiEndpoint);
    try {
      const { entries } = await csi.controller('ListVolumes', {});
      expect(entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id)).toContain(created.id);
    } finally {
      csi.close();
    }
    const listed = await execFile(dvdcli, ['list', `--volumedriver=${driver}`]);
    expectOk(listed);
    expect(listed.stdout.split('\n')).toContain(name);

    // The Docker container exits: the last reference goes, the volume is unmounted.
    const dockerUn = await dockerPluginCall<{ Err: string }>(d.dockerSocket, 'VolumeDriver.Unmount', { Name: name, ID: dockerId });
    expect(dockerUn.Err ?? '').toBe('');
    const after = await d.client.inspectVolume(name);
    expect(after.mounts).toEqual([]);
    expect(after.path).toBeNull();
    expect(existsSync(join(path, 'from-mesos'))).toBe(false);

    // An orphan cleanup after an agent restart: unmount with no mount in this lifetime is fine.
    expectOk(await mesosUnmount(dvdcli, driver, name));
  });

  it('path, get, create, remove and version; socket discovery under /run/docker/plugins', async () => {
    const { root, d, dvdcli, driver } = await daemonWithPlugin('dvdcli-cmds');
    const name = uniq('cmd-vol');
    root.defer(() => d.client.removeVolume(name, { force: true }).catch(() => undefined));

    const created = await execFile(dvdcli, ['create', `--volumedriver=${driver}`, `--volumename=${name}`, '--volumeopts=label.team=storage,size=64MiB']);
    expectOk(created);
    expect(created.stdout).toBe('');
    expect(created.stderr).toMatch(new RegExp(`level=info msg=${name} \\n$`));
    expect((await d.client.inspectVolume(name)).labels).toEqual({ team: 'storage' });

    const got = await execFile(dvdcli, ['--volumedriver', driver, '--volumename', name, 'get']);
    expectOk(got);
    expect(got.stdout).toBe(`${name}\n`);

    // Not mounted: path asks the plugin's Path, which has nothing -> empty stdout, exit 0.
    const unmountedPath = await execFile(dvdcli, ['path', `--volumedriver=${driver}`, `--volumename=${name}`]);
    expectOk(unmountedPath);
    expect(unmountedPath.stdout).toBe('');

    // Socket discovery: the same daemon under a second name that has no spec file, only a
    // socket /run/docker/plugins/<name>.sock (a symlink to the daemon's socket). A name of
    // its own: the spec name must never be found at another address (docker-drivers.ts).
    const bySocket = await acquireDriver('dvdcliSocket');
    root.defer(bySocket.release); // removes the link
    symlinkSync(d.dockerSocket, bySocket.socket!);
    const other = bySocket.driver;
    expect(existsSync(`/etc/docker/plugins/${other}.spec`)).toBe(false);
    const mounted = await execFile(dvdcli, ['mount', `--volumedriver=${other}`, `--volumename=${name}`, '--explicitCreate=true']);
    expectOk(mounted);
    const path = await execFile(dvdcli, ['path', `--volumedriver=${other}`, `--volumename=${name}`]);
    expect(path.stdout).toBe(mounted.stdout);
    expectOk(await mesosUnmount(dvdcli, other, name));

    const removed = await execFile(dvdcli, ['remove', `--volumedriver=${driver}`, `--volumename=${name}`]);
    expectOk(removed);
    await expect(d.client.inspectVolume(name)).rejects.toMatchObject({ kind: 'NotFound' });

    const version = await execFile(dvdcli, ['version']);
    expectOk(version);
    expect(version.stdout.split('\n').map((l) => l.split(':')[0])).toEqual(['Binary', 'SemVer', 'OsArch', 'Branch', 'Commit', 'Formed', '']);
    expect(version.stdout).toContain(`Binary: ${dvdcli}`);
  });

  it('fails with exit 1 and one clear stderr line: option without =, --explicitcreate on a missing volume, no driver, unknown driver, bad options', async () => {
    const { root, d, dvdcli, driver } = await daemonWithPlugin('dvdcli-errors');
    const name = uniq('err-vol');
    root.defer(() => d.client.removeVolume(name, { force: true }).catch(() => undefined));
    const expectFail = (r: ExecResult, stderr: RegExp) => {
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout, r.stderr).toBe('');
      expect(r.stderr).toMatch(stderr);
    };

    expectFail(await execFile(dvdcli, ['mount', `--volumedriver=${driver}`, `--volumename=${name}`, '--volumeopts=size']), /^Error: invalid --volumeopts element "size": expected key=value\n/);
    expectFail(await execFile(dvdcli, ['mount', `--volumedriver=${driver}`, `--volumename=${name}`, '--explicitcreate']), new RegExp(`level=error msg=".*${name}.*" volumeName=${name} \\n$`));
    expectFail(await execFile(dvdcli, ['mount', `--volumedriver=${driver}`, `--volumename=${name}`, '--explicitCreate=true']), /level=error/);
    await expect(d.client.inspectVolume(name)).rejects.toMatchObject({ kind: 'NotFound' }); // nothing was created
    expectFail(await execFile(dvdcli, ['mount', `--volumename=${name}`]), /^time="[^"]+" level=info msg="Missing volume driver name" volumeDriver= \n$/);
    expectFail(
      await execFile(dvdcli, ['mount', '--volumedriver=no-such-driver-x', `--volumename=${name}`], callerEnv({ BERTH_DVDCLI_PLUGIN_WAIT: '0' })),
      /level=info msg="Error looking up volume plugin no-such-driver-x: plugin not found" volumeDriver=no-such-driver-x \n$/,
    );
    expectFail(await mesosMount(dvdcli, driver, name, { bogus: '1' }), /level=error msg=".*opts\.bogus.*" volumeName=/);
    expectFail(await mesosMount(dvdcli, driver, name, { size: 'huge' }), /level=error msg=".*size.*" volumeName=/);
    expectFail(await execFile(dvdcli, ['unmount', `--volumedriver=${driver}`, `--volumename=${name}`, '--volumeopts=a=b']), /^Error: unknown flag: --volumeopts/);
    expectFail(await execFile(dvdcli, ['get', `--volumedriver=${driver}`, `--volumename=${name}`]), new RegExp(`level=error msg=".*" volumeName=${name} \\n$`));
  });
});
