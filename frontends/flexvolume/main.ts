/**
 * The FlexVolume driver executable kubelet and kube-controller-manager run once per call
 * (installed as <plugin dir>/berth~berth/berth by `berth flexvolume install`). It loads
 * only the admin API client: argv -> one admin call or a few -> exactly one JSON reply on
 * stdout, nothing on stderr (kubelet parses both together), exit 0 or 1.
 *
 * The daemon's admin socket: $BERTH_SOCKET, else `socket` from berth.json next to this
 * file (written at install time), else /run/berth/berth.sock. berth.json's `attach: false`
 * (install --no-attach) makes init report a mount-only driver; its `socketAddon` names the
 * install's socket addon, through which the driver reaches the socket (blocking-socket.ts;
 * node:net when it cannot be loaded).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument } from '../../core/errors.js';
import { createAdminClient, DEFAULT_ADMIN_SOCKET } from '../admin/client.js';
import { loadBlockingSockets, sockAddonBeside } from '../blocking-socket.js';
import { directOutput } from '../process-exit.js';
import { ATTACHABLE, MOUNT_ONLY, runFlexCall } from './calls.js';
import { exitCodeOf, failure, toFlexFailure, type FlexCapabilities, type FlexReply } from './errors.js';

/** The file `berth flexvolume install` writes next to the executable. */
export const DRIVER_CONFIG_FILE = 'berth.json';

function driverConfig(): { socket: string; capabilities: FlexCapabilities; addons: string[] } {
  const path = join(import.meta.dirname, DRIVER_CONFIG_FILE);
  let config: { socket?: unknown; attach?: unknown; socketAddon?: unknown } = {};
  let installed = true;
  try {
    config = JSON.parse(readFileSync(path, 'utf8')) as typeof config;
  } catch (err) {
    installed = false;
    // No file: not installed by `berth flexvolume install`; the defaults apply. A file that
    // cannot be used would silently change the socket and the attach capability: refuse.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw invalidArgument(DRIVER_CONFIG_FILE, `${path} cannot be read as JSON (${(err as Error).message}); run \`berth flexvolume install\` again`);
    }
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw invalidArgument(DRIVER_CONFIG_FILE, `${path} must hold a JSON object; run \`berth flexvolume install\` again`);
  }
  const fromFile = typeof config.socket === 'string' && config.socket !== '' ? config.socket : null;
  return {
    socket: process.env.BERTH_SOCKET || fromFile || DEFAULT_ADMIN_SOCKET,
    capabilities: config.attach === false ? MOUNT_ONLY : ATTACHABLE,
    // An installed copy loads only the addon its berth.json names (nothing from kubelet's
    // plugin dir); dist/flexvolume.cjs run in place, the one of its package.
    addons: installed ? (typeof config.socketAddon === 'string' ? [config.socketAddon] : []) : [sockAddonBeside(import.meta.dirname)],
  };
}

async function main(): Promise<void> {
  // Node's own warnings go to stderr, which kubelet would parse as part of the reply.
  process.removeAllListeners('warning');
  let reply: FlexReply;
  let socket = DEFAULT_ADMIN_SOCKET;
  try {
    const config = driverConfig();
    socket = config.socket;
    const argv = process.argv.slice(2);
    // Blocking socket calls instead of node:net (init makes no call).
    const client = () => createAdminClient({ socket: config.socket, frontend: 'flexvolume', sockets: loadBlockingSockets(config.addons) });
    reply = await runFlexCall(argv, client, config.capabilities);
  } catch (err) {
    reply = toFlexFailure(err, socket);
  }
  let text: string;
  try {
    text = JSON.stringify(reply);
  } catch {
    text = JSON.stringify(failure('internal error: unserialisable reply'));
  }
  // The reply is complete on the pipe before the process ends.
  const output = directOutput();
  output.out(1, `${text}\n`);
  output.exit(exitCodeOf(reply));
}

void main();
