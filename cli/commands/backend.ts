/** `berth backend ls`: the configured backend instances, their capabilities and capacity. */
import type { CommandModule } from 'yargs';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import type { BackendInfo, Capacity } from '../../core/types.js';
import { humanBytes } from '../output.js';

type Row = BackendInfo & { capacity: Omit<Capacity, 'backend'> | null };

const ls: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List backend instances',
  handler: async (a) => {
    const client = clientFor(a);
    const [infos, caps] = await Promise.all([client.backends(), client.capacity().catch(() => [] as Capacity[])]);
    const rows: Row[] = infos.map((b) => {
      const c = caps.find((x) => x.backend === b.name);
      return { ...b, capacity: c ? { totalBytes: c.totalBytes, availableBytes: c.availableBytes } : null };
    });
    const caps2 = (r: Row) => {
      const c = r.capabilities;
      return [c.sizeEnforced ? 'size' : 'no-size-limit', c.block && 'block', c.snapshots && 'snapshots', c.clones && 'clones',
        c.expansion !== 'none' && `expand:${c.expansion}`, c.fencing && 'fencing'].filter(Boolean).join(',');
    };
    await (await printerFor(a)).list(rows, [
      { header: 'NAME', cell: (r) => r.name },
      { header: 'DRIVER', cell: (r) => r.driver },
      { header: 'FS', cell: (r) => r.capabilities.fsTypes.join(',') || '-' },
      { header: 'CAPABILITIES', cell: caps2 },
      { header: 'AVAILABLE', cell: (r) => (r.capacity ? `${humanBytes(r.capacity.availableBytes)} of ${humanBytes(r.capacity.totalBytes)}` : '-') },
    ]);
  },
};

export const backendCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'backend',
  aliases: ['backends'],
  describe: 'Inspect backends',
  builder: (y) => y.command(ls).demandCommand(1, 'name a backend subcommand'),
  handler: () => undefined,
};
