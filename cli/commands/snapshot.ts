/** `berth snapshot ls|create|inspect|rm`: one admin API call each. */
import type { CommandModule } from 'yargs';
import { clientFor, printerFor, refPositional, withOptions, type GlobalArgs } from '../context.js';
import { createCopyProgress } from '../progress.js';
import type { Snapshot } from '../../core/types.js';
import { formatBytes, type Column } from '../output.js';

const COLUMNS: readonly Column<Snapshot>[] = [
  { header: 'NAME', cell: (s) => s.name },
  { header: 'VOLUME', cell: (s) => s.volumeId },
  { header: 'SIZE', cell: (s) => formatBytes(s.sizeBytes) },
  { header: 'READY', cell: (s) => (s.readyToUse ? 'yes' : 'no') },
  { header: 'ID', cell: (s) => s.id },
];
const FIELDS: ReadonlyArray<readonly [string, (s: Snapshot) => string]> = [
  ['Name', (s) => s.name],
  ['ID', (s) => s.id],
  ['Volume', (s) => s.volumeId],
  ['Backend', (s) => s.backend],
  ['Size', (s) => `${formatBytes(s.sizeBytes)} (${s.sizeBytes} bytes)`],
  ['Ready', (s) => (s.readyToUse ? 'yes' : 'no')],
  ['Created', (s) => s.createdAt],
];

type Ref = GlobalArgs & { ref: string };

const ls: CommandModule<GlobalArgs, GlobalArgs & { volume?: string }> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List snapshots',
  builder: (y) => withOptions(y, { volume: { type: 'string', describe: 'only snapshots of this volume (name or id)' } }),
  handler: async (a) => (await printerFor(a)).list(await clientFor(a).listSnapshots(a.volume ? { volume: a.volume } : {}), COLUMNS),
};

const create: CommandModule<GlobalArgs, GlobalArgs & { volume: string; name: string }> = {
  command: 'create <volume> <name>',
  describe: 'Snapshot a volume',
  builder: (y) =>
    refPositional(y, 'volume', 'the volume to snapshot (name or id)')
      .positional('name', { type: 'string', demandOption: true, describe: "snapshot name: letters, digits, '_', '.', '-'" }),
  handler: async (a) => {
    // A loop or dir snapshot is a copy of the volume: show its progress like a restore's.
    const progress = await createCopyProgress({ output: a.output, label: 'snapshotting' });
    let snap;
    try {
      snap = await clientFor(a).createSnapshot({ name: a.name, volume: a.volume }, progress.onProgress ? { onProgress: progress.onProgress } : {});
    } finally {
      progress.stop();
    }
    await (await printerFor(a)).item(snap, FIELDS);
  },
};

const inspect: CommandModule<GlobalArgs, Ref> = {
  command: 'inspect <ref>',
  describe: 'Show one snapshot',
  builder: (y) => refPositional(y, 'ref', 'snapshot name or id'),
  handler: async (a) => (await printerFor(a)).item(await clientFor(a).inspectSnapshot(a.ref), FIELDS),
};

const rm: CommandModule<GlobalArgs, Ref> = {
  command: 'rm <ref>',
  aliases: ['remove'],
  describe: 'Delete a snapshot',
  builder: (y) => refPositional(y, 'ref', 'snapshot name or id'),
  handler: async (a) => {
    await clientFor(a).deleteSnapshot(a.ref);
    await (await printerFor(a)).value({ removed: a.ref }, `removed ${a.ref}`);
  },
};

export const snapshotCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'snapshot',
  aliases: ['snapshots', 'snap'],
  describe: 'Manage snapshots',
  builder: (y) => y.command(ls).command(create).command(inspect).command(rm).demandCommand(1, 'name a snapshot subcommand'),
  handler: () => undefined,
};
