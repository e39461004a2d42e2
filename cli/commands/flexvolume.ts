/**
 * `berth flexvolume install|uninstall`: puts the FlexVolume driver where kubelet and
 * kube-controller-manager look for it, <plugin dir>/berth~berth/berth (driver name
 * "berth/berth" in a PV's flexVolume.driver), next to berth.json naming the admin socket.
 *
 * kubelet watches the plugin dir with fsnotify and re-probes (runs `init`) on every write,
 * and ignores names starting with '.': so every file is written under a dot-name first and
 * renamed into place, and a first install builds the whole driver dir under a dot-name and
 * renames it, so kubelet never sees a half-written executable or a dir without one.
 */
// fs.promises, not node:fs/promises: the `berth` bundle is CommonJS, where a top-level
// require of node:fs/promises would load it (and readline, watchers) for every command.
import { existsSync, promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv, CommandModule } from 'yargs';
import { failedPrecondition } from '../../core/errors.js';
import { DEFAULT_ADMIN_SOCKET } from '../../frontends/admin/client.js';
import { sockAddonBeside } from '../../frontends/blocking-socket.js';
import { printerFor, type GlobalArgs } from '../context.js';

export const DEFAULT_PLUGIN_DIR = '/usr/libexec/kubernetes/kubelet-plugins/volume/exec';
/** `<vendor>~<driver>`: kubelet's escaped form of the driver name "berth/berth". */
export const DRIVER_DIR = 'berth~berth';
export const DRIVER_EXECUTABLE = 'berth';
/** Read by frontends/flexvolume/main.ts (DRIVER_CONFIG_FILE). */
export const DRIVER_CONFIG = 'berth.json';

export interface InstallOptions {
  readonly pluginDir: string;
  /** Admin socket the driver talks to (absolute). */
  readonly socket: string;
  /** The bundled driver (dist/flexvolume.cjs). */
  readonly source: string;
  /** Node binary for the driver's #! line: kubelet's PATH may not contain node. */
  readonly nodePath: string;
  /** false: a mount-only driver (init reports attach: false); kubelet calls only mount/unmount. */
  readonly attach?: boolean;
}

/** Where the bundled driver is: next to dist/berth.js, or dist/ of the source tree under tsx. */
export function findDriverBundle(): string {
  const candidates = [new URL('./flexvolume.cjs', import.meta.url), new URL('../../dist/flexvolume.cjs', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw failedPrecondition(`the FlexVolume driver bundle is missing (looked for ${candidates.join(', ')}); run npm run build`);
  return found;
}

async function writeDurably(path: string, data: string, mode: number): Promise<void> {
  const fh = await fsp.open(path, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.chmod(path, mode); // open's mode is filtered by the umask
}

/** Installs (or upgrades in place) the driver; returns the executable's path. */
export async function installFlexDriver(o: InstallOptions): Promise<string> {
  const bundle = await fsp.readFile(o.source, 'utf8');
  const executable = `#!${o.nodePath}\n${bundle.replace(/^#![^\n]*\n/, '')}`;
  // The driver is a copy; the addon it reaches the socket through stays with the install.
  const addon = resolve(sockAddonBeside(dirname(o.source)));
  const config = `${JSON.stringify({ socket: o.socket, attach: o.attach ?? true, ...(existsSync(addon) ? { socketAddon: addon } : {}) }, null, 2)}\n`;
  const driverDir = join(o.pluginDir, DRIVER_DIR);
  await fsp.mkdir(o.pluginDir, { recursive: true, mode: 0o755 });
  const tmp = `.tmp-${process.pid}-${Date.now()}`;

  if (!existsSync(driverDir)) {
    const staging = join(o.pluginDir, `.${DRIVER_DIR}${tmp}`);
    await fsp.mkdir(staging, { mode: 0o755 });
    try {
      await writeDurably(join(staging, DRIVER_CONFIG), config, 0o644);
      await writeDurably(join(staging, DRIVER_EXECUTABLE), executable, 0o755);
      await fsp.chmod(staging, 0o755);
      await fsp.rename(staging, driverDir);
      return join(driverDir, DRIVER_EXECUTABLE);
    } catch (err) {
      await fsp.rm(staging, { recursive: true, force: true });
      // Someone created the dir meanwhile: fall through to the in-place upgrade.
      if (!['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  }
  // Config first: when the new executable appears, kubelet's re-probe already sees the right socket.
  for (const [name, data, mode] of [[DRIVER_CONFIG, config, 0o644], [DRIVER_EXECUTABLE, executable, 0o755]] as const) {
    const temp = join(driverDir, `.${name}${tmp}`);
    try {
      await writeDurably(temp, data, mode);
      await fsp.rename(temp, join(driverDir, name));
    } finally {
      await fsp.rm(temp, { force: true });
    }
  }
  return join(driverDir, DRIVER_EXECUTABLE);
}

/** Removes the driver dir; kubelet unregisters the driver when its executable goes. */
export async function uninstallFlexDriver(pluginDir: string): Promise<string> {
  const driverDir = join(pluginDir, DRIVER_DIR);
  await fsp.rm(driverDir, { recursive: true, force: true });
  return driverDir;
}

type FlexArgs = GlobalArgs & { 'plugin-dir': string; attach?: boolean };

const pluginDirOption = <T>(y: Argv<T>) =>
  y.option('plugin-dir', { type: 'string', default: DEFAULT_PLUGIN_DIR, describe: "kubelet's --volume-plugin-dir (and the controller-manager's --flex-volume-plugin-dir)" });

const install: CommandModule<GlobalArgs, FlexArgs> = {
  command: 'install',
  describe: 'Install the FlexVolume driver (berth/berth) bound to the admin socket (--socket)',
  builder: (y) =>
    pluginDirOption(y).option('attach', {
      type: 'boolean',
      default: true,
      describe: 'report an attachable driver (attach/waitforattach/mountdevice); --no-attach: kubelet calls only mount/unmount',
    }),
  handler: async (a) => {
    const socket = resolve(a.socket ?? process.env.BERTH_SOCKET ?? DEFAULT_ADMIN_SOCKET);
    const attach = a.attach !== false;
    const path = await installFlexDriver({ pluginDir: resolve(a['plugin-dir']), socket, source: findDriverBundle(), nodePath: process.execPath, attach });
    await (await printerFor(a)).value(
      { driver: 'berth/berth', path, socket, attach },
      `installed FlexVolume driver berth/berth at ${path} (admin socket ${socket}${attach ? '' : ', mount-only'})`,
    );
  },
};

const uninstall: CommandModule<GlobalArgs, FlexArgs> = {
  command: 'uninstall',
  describe: 'Remove the FlexVolume driver',
  builder: (y) => pluginDirOption(y),
  handler: async (a) => {
    const dir = await uninstallFlexDriver(resolve(a['plugin-dir']));
    await (await printerFor(a)).value({ removed: dir }, `removed ${dir}`);
  },
};

export const flexvolumeCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'flexvolume',
  describe: 'Install or remove the Kubernetes FlexVolume driver',
  builder: (y) => y.command(install).command(uninstall).demandCommand(1, 'name a flexvolume command: install or uninstall'),
  handler: () => undefined,
};
