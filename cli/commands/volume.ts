/**
 * `berth volume ...`: each subcommand is one admin API call and one print.
 * Validation of sizes, names and options happens in the daemon (one parser for every
 * frontend); the CLI only shapes flags into the request body.
 */
import type { Argv, CommandModule } from 'yargs';
import { clientFor, parsePairs, printerFor, refPositional, withOptions, type GlobalArgs } from '../context.js';
import { humanBytes, VOLUME_COLUMNS, VOLUME_FIELDS } from '../output.js';
import { createCopyProgress } from '../progress.js';
import type { CreateVolumeBody } from '../../frontends/admin/client.js';
import type { AccessMode, VolumeMode } from '../../core/types.js';

/** The consumer reference the CLI holds when it mounts without --consumer. */
export const CLI_CONSUMER = 'cli';

type Ref = GlobalArgs & { ref: string };

const ref = <T>(y: Argv<T>) => refPositional(y);

const ls: CommandModule<GlobalArgs, GlobalArgs & { backend?: string; label?: string[] }> = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List volumes',
  builder: (y) =>
    withOptions(y, {
      backend: { type: 'string', describe: 'only volumes of this backend instance' },
      label: { type: 'string', array: true, describe: 'only volumes with this label (k=v, repeatable)' },
    }),
  handler: async (a) => {
    const labels = parsePairs(a.label, 'label');
    const vols = await clientFor(a).listVolumes({ ...(a.backend ? { backend: a.backend } : {}), labels });
    await (await printerFor(a)).list(vols, VOLUME_COLUMNS);
  },
};

type CreateArgs = GlobalArgs & {
  name: string; size?: string; fs?: string; backend?: string; mode?: string; 'access-mode'?: string;
  label?: string[]; opt?: string[]; 'from-snapshot'?: string; 'from-volume'?: string; preempt?: boolean;
};
const create: CommandModule<GlobalArgs, CreateArgs> = {
  command: 'create <name>',
  describe: 'Create a volume (idempotent: the same parameters return the existing volume)',
  builder: (y) =>
    withOptions(y.positional('name', { type: 'string', demandOption: true, describe: "letters, digits, '_', '.', '-' (1..128 bytes)" }), {
      size: { type: 'string', describe: "512MiB, 1GiB, 10G (10^9), 64M or bytes (default: the backend's; loop 1GiB)" },
      fs: { type: 'string', describe: 'ext4, xfs (>= 300MiB) or btrfs (>= 109MiB); picks the loop backend when --backend is not given' },
      backend: { type: 'string', describe: "backend instance (berth backend ls); default: the config's defaultBackend (local)" },
      mode: { type: 'string', describe: 'filesystem (default) or block' },
      'access-mode': { type: 'string', describe: 'ReadWriteOnce (default), ReadWriteOncePod, ReadOnlyMany, ReadWriteMany' },
      label: { type: 'string', array: true, describe: 'label k=v (repeatable)' },
      opt: { alias: 'o', type: 'string', array: true, describe: 'backend option k=v (repeatable; loop: discard=true|false)' },
      'from-snapshot': { type: 'string', describe: 'fill from this snapshot (name or id)' },
      'from-volume': { type: 'string', describe: 'fill from a copy of this volume (name or id)' },
      preempt: { type: 'boolean', describe: 'cluster mode: a mount on another node takes it from its holder at once (fencing its copy)' },
    })
      .epilog(
        [
          'Examples:',
          '  berth volume create pgdata --backend loop --size 64MiB --fs ext4   # a 64MiB ext4 loop volume',
          '  berth volume create scratch                                        # a directory (dir backend)',
          '',
          'Bad sizes, names, options and backends are refused naming the field; nothing is created.',
        ].join('\n'),
      ),
  handler: async (a) => {
    const labels = parsePairs(a.label, 'label');
    const options = parsePairs(a.opt, 'opt');
    const body: CreateVolumeBody = {
      name: a.name,
      ...(a.size !== undefined ? { size: a.size } : {}),
      ...(a.fs !== undefined ? { fs: a.fs } : {}),
      ...(a.backend !== undefined ? { backend: a.backend } : {}),
      ...(a.mode !== undefined ? { mode: a.mode as VolumeMode } : {}),
      ...(a['access-mode'] !== undefined ? { accessMode: a['access-mode'] as AccessMode } : {}),
      ...(Object.keys(labels).length ? { labels } : {}),
      ...(Object.keys(options).length ? { options } : {}),
      ...(a.preempt !== undefined ? { preempt: a.preempt } : {}),
      ...(a['from-snapshot'] !== undefined ? { fromSnapshot: a['from-snapshot'] } : {}),
      ...(a['from-volume'] !== undefined ? { fromVolume: a['from-volume'] } : {}),
    };
    // Only a restore or a clone copies data; a progress display is shown for those alone.
    const copying = a['from-snapshot'] !== undefined || a['from-volume'] !== undefined;
    const progress = copying
      ? await createCopyProgress({ output: a.output, label: a['from-snapshot'] !== undefined ? 'restoring' : 'cloning' })
      : null;
    let vol;
    try {
      vol = await clientFor(a).createVolume(body, progress?.onProgress ? { onProgress: progress.onProgress } : {});
    } finally {
      progress?.stop();
    }
    await (await printerFor(a)).item(vol, VOLUME_FIELDS);
  },
};

const inspect: CommandModule<GlobalArgs, Ref> = {
  command: 'inspect <ref>',
  describe: 'Show one volume',
  builder: ref,
  handler: async (a) => (await printerFor(a)).item(await clientFor(a).inspectVolume(a.ref), VOLUME_FIELDS),
};

const rm: CommandModule<GlobalArgs, Ref & { force?: boolean }> = {
  command: 'rm <ref>',
  aliases: ['remove'],
  describe: 'Remove a volume (refused while mounted unless --force)',
  builder: (y) => withOptions(ref(y), { force: { alias: 'f', type: 'boolean', describe: 'unmount every reference and detach first' } }),
  handler: async (a) => {
    await clientFor(a).removeVolume(a.ref, { force: a.force ?? false });
    await (await printerFor(a)).value({ removed: a.ref }, `removed ${a.ref}`);
  },
};

const attach: CommandModule<GlobalArgs, Ref & { node?: string; 'read-only'?: boolean }> = {
  command: 'attach <ref>',
  describe: 'Attach the volume to a node (loop: sets up the loop device)',
  builder: (y) =>
    withOptions(ref(y), {
      node: { type: 'string', describe: "node id (default: the daemon's nodeId)" },
      'read-only': { type: 'boolean', describe: 'attach read-only' },
    }),
  handler: async (a) => {
    const v = await clientFor(a).attach(a.ref, { ...(a.node ? { node: a.node } : {}), ...(a['read-only'] ? { readOnly: true } : {}) });
    await (await printerFor(a)).item(v, VOLUME_FIELDS);
  },
};

const detach: CommandModule<GlobalArgs, Ref & { node?: string }> = {
  command: 'detach <ref>',
  describe: 'Detach the volume from a node',
  builder: (y) => withOptions(ref(y), { node: { type: 'string', describe: "node id (default: the daemon's nodeId)" } }),
  handler: async (a) => (await printerFor(a)).item(await clientFor(a).detach(a.ref, a.node ? { node: a.node } : {}), VOLUME_FIELDS),
};

const mount: CommandModule<GlobalArgs, Ref & { consumer: string; target?: string; 'read-only'?: boolean; preempt?: boolean }> = {
  command: 'mount <ref>',
  describe: 'Mount the volume for a consumer and print the path',
  builder: (y) =>
    withOptions(ref(y), {
      consumer: { type: 'string', default: CLI_CONSUMER, describe: 'reference to hold (one per consumer; unmount drops it)' },
      target: { type: 'string', describe: 'also bind-mount the volume here' },
      'read-only': { type: 'boolean', describe: 'mount read-only' },
      preempt: { type: 'boolean', describe: 'cluster mode: take the volume from the node holding it (its copy is shut down first)' },
    }),
  handler: async (a) => {
    const res = await clientFor(a).mount(a.ref, {
      consumer: a.consumer,
      ...(a.target ? { target: a.target } : {}),
      ...(a['read-only'] ? { readOnly: true } : {}),
      ...(a.preempt ? { preempt: true } : {}),
    });
    await (await printerFor(a)).value(res, res.path);
  },
};

const move: CommandModule<GlobalArgs, Ref & { to: string }> = {
  command: 'move <ref>',
  describe: 'Cluster mode: release the volume on the node holding it (run it there) and give it to another node',
  builder: (y) => withOptions(ref(y), { to: { type: 'string', demandOption: true, describe: 'the node that takes the volume' } }),
  handler: async (a) => (await printerFor(a)).item(await clientFor(a).moveVolume(a.ref, a.to), VOLUME_FIELDS),
};

const unmount: CommandModule<GlobalArgs, Ref & { consumer: string }> = {
  command: 'unmount <ref>',
  aliases: ['umount'],
  describe: "Drop a consumer's reference (the last one unmounts)",
  builder: (y) => withOptions(ref(y), { consumer: { type: 'string', default: CLI_CONSUMER, describe: 'the reference to drop (as given to mount)' } }),
  handler: async (a) => {
    const v = await clientFor(a).unmount(a.ref, { consumer: a.consumer });
    await (await printerFor(a)).value(v, `${v.name}: ${v.mounts.length} mount reference(s) left`);
  },
};

const path: CommandModule<GlobalArgs, Ref> = {
  command: 'path <ref>',
  describe: 'Print where the volume is mounted (nothing is printed and exit is 1 when not mounted)',
  builder: ref,
  handler: async (a) => {
    const p = await clientFor(a).path(a.ref);
    await (await printerFor(a)).value({ path: p }, p ?? '');
    if (p === null) process.exitCode = 1;
  },
};

const expand: CommandModule<GlobalArgs, Ref & { size: string }> = {
  command: 'expand <ref> <size>',
  describe: 'Grow the volume to a new size',
  builder: (y) => ref(y).positional('size', { type: 'string', demandOption: true, describe: 'the new size: 2GiB, 10G, bytes' }),
  handler: async (a) => {
    const res = await clientFor(a).expand(a.ref, a.size);
    await (await printerFor(a)).item(res.volume, [
      ...VOLUME_FIELDS.slice(0, 4),
      ['Filesystem growth', () => (res.pendingFsGrowth ? 'at next mount' : 'done')],
    ]);
  },
};

const stats: CommandModule<GlobalArgs, Ref> = {
  command: 'stats <ref>',
  describe: 'Show usage of a mounted volume',
  builder: ref,
  handler: async (a) => {
    const s = await clientFor(a).stats(a.ref);
    await (await printerFor(a)).item(s, [
      ['Total', (x) => `${humanBytes(x.totalBytes)} (${x.totalBytes} bytes)`],
      ['Used', (x) => `${humanBytes(x.usedBytes)} (${x.usedBytes} bytes)`],
      ['Available', (x) => `${humanBytes(x.availableBytes)} (${x.availableBytes} bytes)`],
      // Measured by backends with a filesystem of their own (loop); '-' elsewhere.
      ['Filesystem growth', (x) => (x.fsGrowthPending === undefined ? '-' : x.fsGrowthPending ? 'at next mount' : 'done')],
      ['Health', (x) => (x.abnormal ? `abnormal: ${x.message}` : 'ok')],
    ]);
  },
};

export const volumeCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'volume',
  aliases: ['volumes', 'vol'],
  describe: 'Manage volumes',
  builder: (y) =>
    y
      .command(ls)
      .command(create)
      .command(inspect)
      .command(rm)
      .command(attach)
      .command(detach)
      .command(mount)
      .command(unmount)
      .command(move)
      .command(path)
      .command(expand)
      .command(stats)
      .demandCommand(1, 'name a volume subcommand'),
  handler: () => undefined,
};
