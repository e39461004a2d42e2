// The Docker managed (v2) plugin, made the way the README makes it: the berth image
// (scripts/image/build.sh --offline, once per source tree) turned into a plugin by
// scripts/image/plugin.sh, its state and socket directories set to this suite's root with
// `docker plugin set`, then enabled in the real dockerd. Volumes with options, containers
// writing and reading (dir and loop: every mountpoint lies under the propagated mount),
// state across disable/enable, the admin CLI and CSI from the host through the run directory.
//
// The plugin name comes from the managed-plugin pool (test/helpers/docker-drivers.ts), held
// through a machine lock while the suite runs; the plugin is removed (disable -f, rm -f) even
// when a test fails, and so are the loop devices it attached (found by the inode of their
// image). The image is built in the background from the global setup and this suite runs
// last (test/helpers/image-build.ts): beforeAll waits only for what is left of the build.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBerthImage } from '../helpers/berth-image.js';
import { createCsiClient, mountCap } from '../helpers/csi-client.js';
import { REPO_ROOT, runBerth } from '../helpers/daemon.js';
import { docker, dockerRun, listDriverVolumes, TEST_IMAGE, uniqueName } from '../helpers/docker.js';
import { acquireManagedPluginName } from '../helpers/docker-drivers.js';
import { createTmpRoot, type TmpRoot } from '../helpers/tmp-root.js';

let PLUGIN = '';
let root: TmpRoot;
const containers: string[] = [];

/** Loop devices whose image is a file of the plugin's state dir (the kernel names it by the plugin's own path). */
function pluginLoops(stateDir: string): string[] {
  const dir = join(stateDir, 'backends', 'loop');
  let inodes: Set<string>;
  try {
    inodes = new Set(readdirSync(dir).filter((f) => f.endsWith('.img')).map((f) => String(statSync(join(dir, f)).ino)));
  } catch {
    return [];
  }
  const json = execFileSync('losetup', ['--json', '--list', '--output', 'NAME,BACK-INO'], { encoding: 'utf8' });
  if (!json.trim()) return [];
  return (JSON.parse(json) as { loopdevices: Array<{ name: string; 'back-ino': string | number }> }).loopdevices
    .filter((d) => inodes.has(String(d['back-ino']))).map((d) => d.name);
}

/** Runs scripts/image/plugin.sh; throws with its stderr. */
function pluginScript(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(REPO_ROOT, 'scripts/image/plugin.sh'), ...args], { timeout: 10 * 60_000, maxBuffer: 16 << 20 }, (err, _out, stderr) => {
      if (err) reject(new Error(`scripts/image/plugin.sh ${args.join(' ')} failed: ${err.message}\n${String(stderr).slice(-4000)}`));
      else resolve();
    });
  });
}

async function removePlugin(): Promise<void> {
  await dockerRun(['plugin', 'disable', '-f', PLUGIN]);
  const rm = await dockerRun(['plugin', 'rm', '-f', PLUGIN]);
  if (rm.code !== 0 && !/not found|No such plugin/i.test(rm.stderr)) throw new Error(`docker plugin rm -f ${PLUGIN}: ${rm.stderr}`);
}

function run(volumes: Record<string, string>, script: string): Promise<string> {
  const name = uniqueName('berth-plug');
  containers.push(name);
  const v = Object.entries(volumes).flatMap(([vol, at]) => ['-v', `${vol}:${at}`]);
  return docker(['run', '--rm', '--network', 'none', '--name', name, ...v, TEST_IMAGE, 'sh', '-c', script]);
}

const inspect = async (v: string) => (JSON.parse(await docker(['volume', 'inspect', v])) as Array<Record<string, any>>)[0]!;

beforeAll(async () => {
  root = createTmpRoot('docker-plugin');
  const name = await acquireManagedPluginName();
  root.defer(name.release); // registered first: runs last, once the plugin is gone
  PLUGIN = name.name;
  const state = root.path('state');
  const runDir = root.path('run');
  mkdirSync(state);
  mkdirSync(runDir);
  // Cleanup, last-in first-out: containers and volumes, then the plugin, then its loop devices.
  root.defer(() => {
    for (const d of pluginLoops(state)) execFileSync('losetup', ['--detach', d]);
  });
  root.defer(removePlugin);
  root.defer(async () => {
    for (const c of containers) await dockerRun(['rm', '-f', c]);
    for (const v of await listDriverVolumes(PLUGIN).catch(() => [])) await dockerRun(['volume', 'rm', '-f', v]);
  });
  await removePlugin(); // one a killed run left: the name is ours now, nobody else uses it

  const image = await ensureBerthImage();
  try {
    await pluginScript(['--image', image.image, '--name', PLUGIN]);
  } finally {
    await image.release(); // the plugin has its own copy of the filesystem
  }
  // The config file is a settable path inside the plugin: the state dir is at /berth/state.
  writeFileSync(join(state, 'config.yaml'), 'backends:\n  local: { driver: dir }\n  loop: { driver: loop }\n  small: { driver: loop, defaultSize: 32MiB }\n');
  await docker(['plugin', 'set', PLUGIN, `state.source=${state}`, `run.source=${runDir}`,
    'BERTH_DEFAULT_BACKEND=loop', 'BERTH_LOG_LEVEL=debug', 'BERTH_CONFIG=/berth/state/config.yaml']);
  await docker(['plugin', 'enable', PLUGIN], 120_000);
}, 40 * 60_000);

afterAll(async () => {
  await root?.cleanup();
}, 300_000);

describe('the Docker managed plugin', () => {
  it('is enabled with the settings given; volumes with options are written and read in containers, under the propagated mount', async () => {
    const shown = JSON.parse(await docker(['plugin', 'inspect', PLUGIN])) as Array<Record<string, any>>;
    expect(shown[0]!.Enabled).toBe(true);
    expect(shown[0]!.Settings.Env).toEqual(expect.arrayContaining(['BERTH_DEFAULT_BACKEND=loop', 'BERTH_LOG_LEVEL=debug']));
    const pluginDir = `/var/lib/docker/plugins/${shown[0]!.Id as string}/propagated-mount/`;

    const loop = uniqueName('plv');
    const dir = uniqueName('pdv');
    const small = uniqueName('psv');
    await docker(['volume', 'create', '-d', PLUGIN, '-o', 'size=64MiB', '-o', 'fs=ext4', loop]);
    await docker(['volume', 'create', '-d', PLUGIN, '-o', 'backend=local', '-o', 'label.team=storage', dir]);
    await docker(['volume', 'create', '-d', PLUGIN, '-o', 'backend=small', small]);
    expect((await inspect(loop)).Status).toMatchObject({ backend: 'loop', fs: 'ext4', sizeBytes: 64 * 2 ** 20 });
    expect((await inspect(dir)).Status).toMatchObject({ backend: 'local', labels: { team: 'storage' } });
    // From the config file the plugin was pointed at.
    expect((await inspect(small)).Status).toMatchObject({ backend: 'small', sizeBytes: 32 * 2 ** 20 });

    await run({ [loop]: '/l', [dir]: '/d' }, 'echo in-loop > /l/f && echo in-dir > /d/f');
    expect(await run({ [loop]: '/l', [dir]: '/d' }, 'cat /l/f /d/f')).toBe('in-loop\nin-dir');
    // Docker mounted what berth returned, translated to the propagated mount on the host.
    const name = uniqueName('berth-plug-bg');
    containers.push(name);
    await docker(['run', '-d', '--network', 'none', '--name', name, '-v', `${loop}:/l`, TEST_IMAGE, 'sleep', '600']);
    // berth answers with a path under the propagated mount (/berth), which Docker finds on the
    // host under the plugin's propagated-mount directory, with the container's data in it.
    const mp = (await inspect(loop)).Mountpoint as string;
    expect(mp).toMatch(/^\/berth\/state\/mounts\/vol-[0-9a-z]+\/data$/);
    expect(execFileSync('cat', [join(pluginDir, mp.slice('/berth/'.length), 'f')], { encoding: 'utf8' })).toBe('in-loop\n');
    await docker(['rm', '-f', name]);
    // The dir volume's data is in the host state directory the plugin was given.
    const id = (await inspect(dir)).Status.id as string;
    expect(execFileSync('cat', [join(root.path('state'), 'backends', 'local', id, 'f')], { encoding: 'utf8' })).toBe('in-dir\n');

    const loopId = (await inspect(loop)).Status.id as string;
    for (const v of [loop, dir, small]) await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(PLUGIN)).toEqual([]);
    // No loop device is left on the image (the kernel names it by its path inside the plugin).
    expect(execFileSync('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'], { encoding: 'utf8' })).not.toContain(loopId);
  });

  it('keeps volumes and data across docker plugin disable and enable', async () => {
    const v = uniqueName('pkeep');
    await docker(['volume', 'create', '-d', PLUGIN, '-o', 'size=64MiB', v]);
    await run({ [v]: '/l' }, 'echo kept > /l/f');
    // Docker counts every volume of the plugin as a use: disable needs -f while they exist.
    expect((await dockerRun(['plugin', 'disable', PLUGIN])).stderr).toMatch(/in use/);
    await docker(['plugin', 'disable', '-f', PLUGIN]);
    await docker(['plugin', 'enable', PLUGIN], 120_000);
    expect(await run({ [v]: '/l' }, 'cat /l/f')).toBe('kept');
    await docker(['volume', 'rm', v]);
  });

  it('is reached from the host: the admin CLI and CSI through the run directory it was given', async () => {
    const socket = root.path('run', 'berth.sock');
    const status = await runBerth(['status', '--output', 'json'], { socket });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ ready: true, daemon: { stateRoot: '/berth/state', logLevel: 'debug' } });

    const v = uniqueName('pcli');
    await docker(['volume', 'create', '-d', PLUGIN, '-o', 'backend=local', v]);
    const ls = await runBerth(['volume', 'ls', '--output', 'json'], { socket });
    expect((JSON.parse(ls.stdout) as Array<{ name: string }>).map((x) => x.name)).toContain(v);

    const csi = createCsiClient(root.path('run', 'csi.sock'));
    try {
      expect((await csi.identity('GetPluginInfo')).name).toBe('csi.berth.dev');
      const csiName = uniqueName('pcsi');
      const made = (await csi.controller('CreateVolume', { name: csiName, volume_capabilities: [mountCap()], parameters: { backend: 'local' } })).volume;
      // One volume whichever frontend asks: Docker lists what CSI made.
      expect(await listDriverVolumes(PLUGIN)).toEqual(expect.arrayContaining([v, csiName]));
      await csi.controller('DeleteVolume', { volume_id: made.volume_id });
    } finally {
      csi.close();
    }
    await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(PLUGIN)).not.toContain(v);
  });
});
