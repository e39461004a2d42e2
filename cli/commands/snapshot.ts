/** `berth snapshot ls|create|inspect|rm`: one admin API call each. */
import type { CommandModule } from 'yargs';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import type { Snapshot } from '../../core/types.js';
import { formatBytes, type Column } from '../output.js';

const COLUMNS: readonly Column<Snapshot>[] = [
  { header: 'NAME', cell: (s) => s.name },
  { header: 'VOLUME', cell: (s) => s.volumeId },
  { header: 'SIZE', cell: (s) => formatBytes(s.sizeBytes) },
  { header: 'READY', cell: (s) => (s.readyToUse ? 'yes' : 'no') },
  { header: 'ID', cell: (s) => s.id },
];
const FIELDS = COLUMNS.map((c) => [c.header.toLowerCase(), c.cell] as const);

type Ref = GlobalArgs & { ref: string };

const ls: CommandModule<GlobalArgs, GlobalArgs & { volume?: string }> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List snapshots',
  builder: (y) => y.option('volume', { type: 'string', describe: 'only snapshots of this volume' }),
  handler: async (a) => printerFor(a).list(await clientFor(a).listSnapshots(a.volume ? { volume: a.volume } : {}), COLUMNS),
};

const create: CommandModule<GlobalArgs, GlobalArgs & { volume: string; name: string }> = {
  command: 'create <volume> <name>',
  describe: 'Snapshot a volume',
  builder: (y) =>
    y.positional('volume', { type: 'string', demandOption: true, describe: 'volume name or id' })
      .positional('name', { type: 'string', demandOption: true, describe: 'snapshot name' }),
  handler: async (a) => printerFor(a).item(await clientFor(a).createSnapshot({ name: a.name, volume: a.volume }), FIELDS),
};

const inspect: CommandModule<GlobalArgs, Ref> = {
  command: 'inspect <ref>',
  describe: 'Show one snapshot',
  builder: (y) => y.positional('ref', { type: 'string', demandOption: true }),
  handler: async (a) => printerFor(a).item(await clientFor(a).inspectSnapshot(a.ref), FIELDS),
};

const rm: CommandModule<GlobalArgs, Ref> = {
  command: 'rm <ref>',
  aliases: ['remove'],
  describe: 'Delete a snapshot',
  builder: (y) => y.positional('ref', { type: 'string', demandOption: true }),
  handler: async (a) => {
    await clientFor(a).deleteSnapshot(a.ref);
    printerFor(a).value({ removed: a.ref }, `removed ${a.ref}`);
  },
};

export const snapshotCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'snapshot',
  aliases: ['snapshots', 'snap'],
  describe: 'Manage snapshots',
  builder: (y) => y.command(ls).command(create).command(inspect).command(rm).demandCommand(1, 'name a snapshot subcommand'),
  handler: () => undefined,
};
