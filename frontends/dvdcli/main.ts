/**
 * A dvdcli-compatible executable (Mesos docker/volume isolator, mesos-module-dvdi,
 * Marathon external volumes): parses dvdcli's argv, talks to the named Docker volume
 * plugin over its socket / spec file (plugin-client.ts) and prints exactly what dvdcli
 * prints: for `mount` the mountpoint alone on stdout, log lines on stderr (dvdcli-mesos.md §1).
 *
 * `mount` sends no ID, as dvdcli does, so berth's Docker frontend holds one shared
 * reference ("dvdcli") for all Mesos containers: a repeated mount returns the same path,
 * and the single unmount Mesos sends when the last container is gone releases it.
 */
import { resolve } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { loadBlockingSockets, sockAddonBeside, type BlockingSockets } from '../blocking-socket.js';
import { parseArgs, USAGE, type ParsedArgs } from './args.js';
import { CommandFailure, output, reportFailure, stderrLogger, type Logger } from './errors.js';
import { connectPlugin, PluginCallError, PluginUnavailableError, type PluginClient } from './plugin-client.js';

interface PluginVolume {
  readonly Name: string;
  readonly Mountpoint?: string;
}

/** dvdcli retries discovery / connection for ~15 s; BERTH_DVDCLI_PLUGIN_WAIT (seconds) changes that. */
const DEFAULT_WAIT_SECONDS = 15;

function waitSeconds(env: NodeJS.ProcessEnv): number {
  const raw = env.BERTH_DVDCLI_PLUGIN_WAIT;
  if (raw === undefined || raw === '') return DEFAULT_WAIT_SECONDS;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new CommandFailure(`invalid BERTH_DVDCLI_PLUGIN_WAIT ${JSON.stringify(raw)}: expected seconds`, 'error');
  return n;
}

/** Re-labels an error with the field dvdcli adds for Get/Create failures. */
function withVolumeName<T>(p: Promise<T>, volumeName: string): Promise<T> {
  return p.catch((err: unknown) => {
    if (err instanceof PluginCallError || err instanceof PluginUnavailableError) throw new CommandFailure(err.message, 'error', { volumeName });
    throw err;
  });
}

async function getVolume(plugin: PluginClient, name: string): Promise<PluginVolume> {
  const reply = await plugin.call<{ Volume?: PluginVolume | null }>('VolumeDriver.Get', { Name: name });
  if (!reply.Volume) throw new PluginCallError('no such volume', 'VolumeDriver.Get');
  return reply.Volume;
}

/** Runs one command; returns stdout text. Throws UsageError / CommandFailure / plugin errors. */
export async function runDvdcli(args: ParsedArgs, log: Logger, env: NodeJS.ProcessEnv, sockets: BlockingSockets | null = null): Promise<string> {
  if (args.help || args.command === null) return USAGE;
  if (args.command === 'version') {
    return [
      `Binary: ${resolve(process.argv[1] ?? 'dvdcli')}`,
      `SemVer: ${pkg.version}`,
      `OsArch: ${process.platform}-${process.arch}`,
      'Branch: ',
      'Commit: ',
      'Formed: ',
      '',
    ].join('\n');
  }
  if (args.volumeDriver === '') throw new CommandFailure('Missing volume driver name', 'info', { volumeDriver: '' });
  if (args.volumeName === '' && args.command !== 'list') throw new CommandFailure('Missing volume name', 'error', { volumeName: '' });

  let plugin: PluginClient;
  try {
    // Every command but create and list starts with a Get: it goes out beside Plugin.Activate.
    const startsWithGet = args.command !== 'create' && args.command !== 'list';
    plugin = await connectPlugin({
      name: args.volumeDriver, waitSeconds: waitSeconds(env), warn: (m) => log('warning', m), sockets,
      ...(startsWithGet ? { prefetch: { method: 'VolumeDriver.Get', body: { Name: args.volumeName } } } : {}),
    });
  } catch (err) {
    if (err instanceof PluginUnavailableError || err instanceof PluginCallError) {
      throw new CommandFailure(err.message, 'info', { volumeDriver: args.volumeDriver });
    }
    throw err;
  }
  const name = args.volumeName;

  switch (args.command) {
    case 'mount': {
      let exists = true;
      try {
        await getVolume(plugin, name);
      } catch (err) {
        if (args.explicitCreate) throw new CommandFailure((err as Error).message, 'error', { volumeName: name });
        exists = false;
      }
      if (!exists) await withVolumeName(plugin.call('VolumeDriver.Create', { Name: name, Opts: args.volumeOpts }), name);
      // Always Mount, even when it exists: every Mesos container runs its own dvdcli mount.
      const { Mountpoint } = await plugin.call<{ Mountpoint?: string }>('VolumeDriver.Mount', { Name: name });
      if (!Mountpoint) throw new CommandFailure(`VolumeDriver.Mount: the plugin returned no mountpoint for ${name}`, 'error');
      log('info', Mountpoint);
      return `${Mountpoint}\n`;
    }
    case 'unmount':
      await withVolumeName(getVolume(plugin, name), name);
      await plugin.call('VolumeDriver.Unmount', { Name: name });
      return '';
    case 'path': {
      const vol = await withVolumeName(getVolume(plugin, name), name);
      let path = vol.Mountpoint ?? '';
      if (path === '') path = (await plugin.call<{ Mountpoint?: string }>('VolumeDriver.Path', { Name: name })).Mountpoint ?? '';
      if (path === '') return '';
      log('info', path);
      return `${path}\n`;
    }
    case 'create':
      await withVolumeName(plugin.call('VolumeDriver.Create', { Name: name, Opts: args.volumeOpts }), name);
      log('info', name);
      return '';
    case 'remove':
      await withVolumeName(getVolume(plugin, name), name);
      await plugin.call('VolumeDriver.Remove', { Name: name });
      return '';
    case 'get':
      return `${(await withVolumeName(getVolume(plugin, name), name)).Name}\n`;
    case 'list': {
      const { Volumes } = await plugin.call<{ Volumes?: PluginVolume[] | null }>('VolumeDriver.List', {});
      return (Volumes ?? []).map((v) => `${v.Name}\n`).join('');
    }
    default: {
      const never: never = args.command;
      return String(never);
    }
  }
}

async function main(): Promise<void> {
  process.removeAllListeners('warning');
  let stdout = '';
  let code = 0;
  try {
    const args = parseArgs(process.argv.slice(2));
    // Blocking socket calls instead of node:net, for the commands that call a plugin.
    const callsPlugin = !args.help && args.command !== null && args.command !== 'version';
    const sockets = callsPlugin ? loadBlockingSockets([sockAddonBeside(import.meta.dirname)]) : null;
    stdout = await runDvdcli(args, stderrLogger, process.env, sockets);
  } catch (err) {
    code = reportFailure(err, stderrLogger);
  }
  output.out(1, stdout);
  output.exit(code);
}

void main();
