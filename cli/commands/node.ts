/** `berth node ls`: the cluster's nodes (single node: this one), their leases and what they hold. */
import type { Argv, CommandModule } from 'yargs';
import type { NodeStatus } from '../../core/types.js';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import { uptime } from './status.js';

/** "alive" / "expired" for the daemon's lease, plus the fence agent's when the node runs one. */
export function leaseState(n: NodeStatus): string {
  const daemon = n.alive ? 'alive' : 'expired';
  const agent = n.agentAlive && !n.alive ? ' (fence agent alive)' : '';
  const fence = n.fence ? (n.fence.state === 'done' ? ', fenced' : ', fence ordered') : '';
  return `${daemon}${agent}${fence}`;
}

const ls: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List the nodes of the cluster: which one leads, address, version, lease, last seen, volumes attached, backends',
  handler: async (a) => {
    const nodes = await clientFor(a).nodes();
    await (await printerFor(a)).list(nodes, [
      { header: 'NODE', cell: (n) => n.id },
      { header: 'LEADER', cell: (n) => (n.leader ? 'yes' : '-') },
      { header: 'ADDRESS', cell: (n) => n.addresses[0] ?? '-' },
      { header: 'VERSION', cell: (n) => n.version },
      { header: 'LEASE', cell: leaseState },
      { header: 'LAST SEEN', cell: (n) => (n.alive ? 'now' : `${uptime(n.lastSeen)} ago`) },
      { header: 'VOLUMES', cell: (n) => String(n.attachedVolumes) },
      { header: 'BACKENDS', cell: (n) => n.backends.map((b) => (b.shared ? `${b.name} (shared)` : b.name)).join(', ') || '-' },
    ]);
  },
};

type NodeArg = GlobalArgs & { node: string };
const nodePositional = <T>(y: Argv<T>) => y.positional('node', { type: 'string', demandOption: true, describe: 'a node id (berth node ls)' });

const fence: CommandModule<GlobalArgs, NodeArg> = {
  command: 'fence <node>',
  describe: "Fence a node: its exclusive volumes' filesystems are shut down there (by its daemon, or its fence agent when the daemon is down), so another node may take them; a node with nothing of berth alive is declared down",
  builder: (y) => nodePositional(y),
  handler: async (a) => {
    const f = await clientFor(a).fenceNode(a.node);
    const how = f.state === 'done' ? `fenced (${f.doneBy === 'declared' ? 'declared down: nothing of berth answers there' : `confirmed by its ${f.doneBy}`}; ${f.volumes.length} filesystem(s) shut down)` : 'fence ordered, not confirmed yet';
    await (await printerFor(a)).value(f, `${a.node}: ${how}`);
    if (f.state !== 'done') process.exitCode = 1;
  },
};

const unfence: CommandModule<GlobalArgs, NodeArg> = {
  command: 'unfence <node>',
  describe: 'Withdraw a node\'s fence (it may hold volumes again)',
  builder: (y) => nodePositional(y),
  handler: async (a) => {
    await clientFor(a).unfenceNode(a.node);
    await (await printerFor(a)).value({ node: a.node, fenced: false }, `${a.node}: unfenced`);
  },
};

export const nodeCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'node',
  aliases: ['nodes'],
  describe: 'Inspect the nodes of the cluster, fence and unfence them',
  builder: (y) => y.command(ls).command(fence).command(unfence).demandCommand(1, 'name a node subcommand'),
  handler: () => undefined,
};
