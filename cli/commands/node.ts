/** `berth node ls`: the cluster's nodes (single node: this one), their leases and what they hold. */
import type { CommandModule } from 'yargs';
import type { NodeStatus } from '../../core/types.js';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import { uptime } from './status.js';

/** "alive" / "expired" for the daemon's lease, plus the fence agent's when the node runs one. */
export function leaseState(n: NodeStatus): string {
  const daemon = n.alive ? 'alive' : 'expired';
  return n.agentAlive && !n.alive ? `${daemon} (fence agent alive)` : daemon;
}

const ls: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List the nodes of the cluster: address, version, lease, last seen, volumes attached, backends',
  handler: async (a) => {
    const nodes = await clientFor(a).nodes();
    (await printerFor(a)).list(nodes, [
      { header: 'NODE', cell: (n) => n.id },
      { header: 'ADDRESS', cell: (n) => n.addresses[0] ?? '-' },
      { header: 'VERSION', cell: (n) => n.version },
      { header: 'LEASE', cell: leaseState },
      { header: 'LAST SEEN', cell: (n) => (n.alive ? 'now' : `${uptime(n.lastSeen)} ago`) },
      { header: 'VOLUMES', cell: (n) => String(n.attachedVolumes) },
      { header: 'BACKENDS', cell: (n) => n.backends.map((b) => (b.shared ? `${b.name} (shared)` : b.name)).join(', ') || '-' },
    ]);
  },
};

export const nodeCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'node',
  aliases: ['nodes'],
  describe: 'Inspect the nodes of the cluster',
  builder: (y) => y.command(ls).demandCommand(1, 'name a node subcommand'),
  handler: () => undefined,
};
