/**
 * Every call kubelet and kube-controller-manager make of a FlexVolume driver
 * (flexvolume.md §5), each turned into admin API calls. The volume a call means comes
 * from its option JSON (options.ts); calls that get no JSON (unmount, unmountdevice,
 * detach) find the volume by the consumer reference or the PV name.
 *
 * Consumers: a pod's volume dir is "flex:<dir>" bind-mounted at <dir>; the per-node
 * device mount (mountdevice) is "flex-device:<path>" at <path>, made only for volumes with
 * a filesystem of their own (see mountDevice). The core keeps the filesystem mounted until
 * the last reference goes.
 *
 * berth volumes live on one node's daemon, but kube-controller-manager runs attach,
 * isattached and detach on its own host with the pod's node name. So those three act only
 * when that name is the local daemon's node id (a controller on the node itself, or a
 * single-node cluster); for any other node they succeed without touching anything, and
 * the node's kubelet gets the device at mountdevice, where the core attaches implicitly
 * and detaches again with the last unmount.
 */
import { isBerthError, invalidArgument, notFound, renameErrorField } from '../../core/errors.js';
import type { Volume } from '../../core/types.js';
import { failure, notSupported, success, type FlexCapabilities, type FlexReply } from './errors.js';
import type { AdminClient } from '../admin/client.js';
import { parseFlexOptions, PV_LABEL, type FlexOptions } from './options.js';

/** The part of the admin API client (frontends/admin/client.ts) this driver uses. */
export type FlexAdmin = Pick<
  AdminClient,
  'inspectVolume' | 'listVolumes' | 'createVolume' | 'attach' | 'detach' | 'mount' | 'unmount' | 'expand' | 'stats' | 'version'
>;

/**
 * attach: kubelet runs attach -> waitforattach -> mountdevice -> mount, so the loop device
 * exists before any mount. supportsMetrics: the pod dir is a bind mount of the volume, so
 * kubelet's statfs of it is right. fsGroup: kubelet chowns the volume itself after mount.
 * requiresFSResize false: the daemon's expand grows the filesystem too, kubelet must not
 * run resize2fs on its own.
 */
export const ATTACHABLE: FlexCapabilities = {
  attach: true,
  selinuxRelabel: true,
  supportsMetrics: true,
  fsGroup: true,
  requiresFSResize: true,
};

/** `berth flexvolume install --no-attach`: kubelet calls only mount and unmount. */
export const MOUNT_ONLY: FlexCapabilities = { ...ATTACHABLE, attach: false };

const localNode = (admin: FlexAdmin) => admin.version().then((v) => v.nodeId);

export const podConsumer = (dir: string) => `flex:${dir}`;
export const deviceConsumer = (path: string) => `flex-device:${path}`;

const isKind = (err: unknown, kind: string) => isBerthError(err) && err.kind === kind;

function arg(args: readonly string[], i: number, usage: string): string {
  const v = args[i];
  if (v === undefined) throw invalidArgument('argv', `missing argument; usage: ${usage}`);
  return v;
}

/**
 * A directory kubelet passes (pod volume dir, device mount dir). It becomes a mount target
 * and part of a consumer reference, so it must be absolute, without '..' or NUL; the
 * daemon checks targets again, this names the argument for whoever reads the pod events.
 */
function dirArg(args: readonly string[], i: number, usage: string, field: string): string {
  const dir = arg(args, i, usage);
  if (!dir.startsWith('/')) throw invalidArgument(field, `${JSON.stringify(dir)} must be an absolute path`);
  if (dir.includes('\0')) throw invalidArgument(field, 'must not contain NUL');
  if (dir.split('/').includes('..')) throw invalidArgument(field, `${JSON.stringify(dir)} must not contain ".."`);
  return dir;
}

function sizeArg(value: string, field: string): number {
  if (!/^\d+$/.test(value)) throw invalidArgument(field, `expected a size in bytes, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** The volume the options name; created from them when missing (unless option create=false). */
async function ensureVolume(admin: FlexAdmin, opts: FlexOptions): Promise<Volume> {
  let vol: Volume;
  try {
    vol = await admin.inspectVolume(opts.ref);
  } catch (err) {
    if (!isKind(err, 'NotFound')) throw err;
    if (!opts.createIfMissing) throw notFound(`volume ${JSON.stringify(opts.ref)} does not exist and the create option is false`);
    try {
      vol = await admin.createVolume(opts.create);
    } catch (createErr) {
      // Another call (another pod on this node) created it first.
      if (!isKind(createErr, 'AlreadyExists')) throw createErr;
      vol = await admin.inspectVolume(opts.ref);
    }
  }
  if (opts.fsType !== null && vol.fsType !== null && vol.fsType !== opts.fsType) {
    throw invalidArgument('kubernetes.io/fsType', `volume ${vol.name} has filesystem ${vol.fsType}, the volume spec asks for ${opts.fsType}`);
  }
  return vol;
}

/** The volume holding `consumer`, found by scanning mount references (unmount gets no JSON). */
async function volumeWithConsumer(admin: FlexAdmin, consumer: string): Promise<Volume | null> {
  const all = await admin.listVolumes();
  return all.find((v) => v.mounts.some((m) => m.consumer === consumer)) ?? null;
}

/**
 * detach gets only the PV / pod volume name: the volume by that name, else the volumes this
 * driver created for that name (label flex-pv). Inline volumes of different pods may share
 * a pod volume name (kubelet then shares the attachment, too), so every such volume that is
 * attached to the node and no longer mounted is detached.
 */
async function volumesForPv(admin: FlexAdmin, pvName: string, node: string): Promise<Volume[]> {
  try {
    return [await admin.inspectVolume(pvName)];
  } catch (err) {
    if (!isKind(err, 'NotFound')) throw err;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(pvName)) return [];
  const attached = (await admin.listVolumes({ labels: { [PV_LABEL]: pvName } })).filter((v) => v.attachments.some((a) => a.node === node));
  const idle = attached.filter((v) => v.mounts.length === 0);
  // All still mounted: try one anyway, so the daemon's InUse tells kubelet to retry later.
  return idle.length > 0 ? idle : attached.slice(0, 1);
}

const deviceOn = (vol: Volume, node: string): string | null | undefined =>
  vol.attachments.find((a) => a.node === node)?.device;

async function attach(admin: FlexAdmin, json: string, node: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'attach options JSON');
  if (node !== (await localNode(admin))) return success({ message: `${node} is not this daemon's node: its kubelet attaches at mountdevice` });
  const vol = await ensureVolume(admin, opts);
  const attached = await admin.attach(vol.id, { node, readOnly: opts.readOnly });
  const device = deviceOn(attached, node);
  return device ? success({ device }) : success();
}

async function isAttached(admin: FlexAdmin, a: string, b: string): Promise<FlexReply> {
  // Older kubelets sent `isattached <node> <json>`, current ones `<json> <node>` (§9).
  const [json, node] = a.trimStart().startsWith('{') ? [a, b] : [b, a];
  const opts = parseFlexOptions(json, 'isattached options JSON');
  // Another node's attachments are its kubelet's business: report them as in place.
  if (node !== (await localNode(admin))) return success({ attached: true });
  try {
    const vol = await admin.inspectVolume(opts.ref);
    return success({ attached: vol.attachments.some((x) => x.node === node) });
  } catch (err) {
    if (isKind(err, 'NotFound')) return success({ attached: false });
    throw err;
  }
}

async function waitForAttach(admin: FlexAdmin, devicePath: string, json: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'waitforattach options JSON');
  const [vol, node] = await Promise.all([ensureVolume(admin, opts), localNode(admin)]);
  // Not attached here (the controller runs elsewhere): mountdevice attaches it implicitly.
  const device = deviceOn(vol, node);
  // kubelet passes `device` on as mountdevice's devicePath; keep the caller's when there is none.
  return success({ device: device || devicePath });
}

async function detach(admin: FlexAdmin, pvName: string, node: string): Promise<FlexReply> {
  if (node !== (await localNode(admin))) return success({ message: `${node} is not this daemon's node` });
  const vols = (await volumesForPv(admin, pvName, node)).filter((v) => v.attachments.some((a) => a.node === node));
  if (vols.length === 0) return success({ message: `no volume for ${pvName} is attached to ${node}` });
  for (const vol of vols) await admin.detach(vol.id, { node });
  return success();
}

/** The daemon names the path it refuses "target"; kubelet's pod events should name the argument. */
async function asArgument<T>(dirField: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw renameErrorField(err, { target: dirField, fsType: 'kubernetes.io/fsType' });
  }
}

/**
 * mount <pod dir> <json>: binds the volume itself at the pod's dir; kubelet calls unmount for
 * it whatever the dir looks like. One admin call when the volume exists (the daemon checks
 * the spec's filesystem before it mounts anything); the volume is created only when that
 * call finds none, then mounted.
 */
async function mountPod(admin: FlexAdmin, json: string, dir: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'mount options JSON');
  const body = { consumer: podConsumer(dir), target: dir, readOnly: opts.readOnly, ...(opts.fsType !== null ? { fsType: opts.fsType } : {}) };
  const mount = (ref: string) => asArgument('mount dir', () => admin.mount(ref, body));
  try {
    await mount(opts.ref);
  } catch (err) {
    if (!isKind(err, 'NotFound')) throw err;
    const vol = await ensureVolume(admin, opts);
    await mount(vol.id);
  }
  return success();
}

/**
 * mountdevice <device mount dir> <device> <json>: the per-node mount kubelet keeps at
 * DEV_MOUNT. kubelet calls unmountdevice later only if DEV_MOUNT looks mounted by its own
 * rule, a device number (st_dev) different from its parent directory's (flexvolume.md §5).
 * A volume with a filesystem of its own (loop: fsType set) shows its own device number
 * there. A dir volume (or a btrfs subvolume, or a raw block volume) has none berth can
 * promise: a bind of a directory on kubelet's own disk looks unmounted, so kubelet would
 * never call unmountdevice, never remove the busy directory and never let the controller
 * detach. Those volumes get nothing at DEV_MOUNT and no reference: pods do not need it
 * (mount binds the volume itself), kubelet removes the empty directory, and a repeated
 * mountdevice (kubelet restarts, DEV_MOUNT still looks unmounted) changes nothing.
 */
async function mountDevice(admin: FlexAdmin, json: string, path: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'mountdevice options JSON');
  const vol = await ensureVolume(admin, opts);
  if (!hasOwnFilesystem(vol)) return success({ message: `${vol.name} has no filesystem of its own: nothing to mount at the device path` });
  await asArgument('device mount dir', () => admin.mount(vol.id, { consumer: deviceConsumer(path), target: path, readOnly: opts.readOnly }));
  return success();
}

/** A volume whose mount shows a device number of its own: berth made its filesystem (loop). */
const hasOwnFilesystem = (vol: Volume) => vol.volumeMode === 'filesystem' && vol.fsType !== null;

async function unmountAt(admin: FlexAdmin, consumer: string, dirField: string): Promise<FlexReply> {
  const vol = await volumeWithConsumer(admin, consumer);
  // Retries after a crash or a timeout are normal: not mounted is done (§8.5).
  if (vol === null) return success({ message: 'not mounted' });
  await asArgument(dirField, () => admin.unmount(vol.id, { consumer }));
  return success();
}

async function expandVolume(admin: FlexAdmin, json: string, newSize: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'expandvolume options JSON');
  const size = sizeArg(newSize, 'newSizeBytes');
  const vol = await admin.inspectVolume(opts.ref);
  if (vol.sizeBytes >= size) return success({ message: `${vol.name} already has ${vol.sizeBytes} bytes` });
  await admin.expand(vol.id, size);
  return success();
}

/**
 * expandfs <json> <device> <device mount path> <new size> <old size>: kubelet's node-side
 * step. It grows the volume if the controller's expandvolume has not (idempotent), then
 * answers Success once the filesystem has grown to its device, and a Failure kubelet
 * retries while it waits for its next mountdevice. In practice only ext4 waits: xfs and
 * btrfs grow while mounted (an expand that could not grow them failed), block volumes have
 * no filesystem, and an unmounted filesystem grows at its mount, before anyone uses it.
 */
async function expandFs(admin: FlexAdmin, json: string, newSize: string): Promise<FlexReply> {
  const opts = parseFlexOptions(json, 'expandfs options JSON');
  const size = sizeArg(newSize, 'newSizeBytes');
  let vol = await admin.inspectVolume(opts.ref);
  let pending = false;
  if (vol.sizeBytes < size) ({ volume: vol, pendingFsGrowth: pending } = await admin.expand(vol.id, size));
  if (vol.volumeMode === 'block' || vol.path === null) return success();
  // The daemon measures the filesystem against its device (stats' fsGrowthPending, from the
  // superblock); backends without a filesystem of their own (dir, btrfs) leave it out.
  if (pending || (await admin.stats(vol.id)).fsGrowthPending === true) {
    const why = vol.fsType === 'ext4' ? 'cannot grow while mounted' : 'has not grown to its device yet';
    return failure(`the ${vol.fsType ? `${vol.fsType} ` : ''}filesystem of ${vol.name} ${why}; it grows to ${size} bytes at its next mount (restart the pod)`);
  }
  return success();
}

/**
 * Runs one driver call. `admin` is created only by calls that need the daemon;
 * `capabilities` is what init reports (ATTACHABLE unless installed with --no-attach).
 */
export async function runFlexCall(argv: readonly string[], admin: () => FlexAdmin, capabilities: FlexCapabilities = ATTACHABLE): Promise<FlexReply> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'init':
      return success({ capabilities });
    case 'getvolumename':
      // kubelet ignores the answer and uses the PV / volume name either way (§5, §7).
      return notSupported();
    case 'attach':
      return attach(admin(), arg(args, 0, 'attach <json> <node>'), arg(args, 1, 'attach <json> <node>'));
    case 'isattached':
      return isAttached(admin(), arg(args, 0, 'isattached <json> <node>'), arg(args, 1, 'isattached <json> <node>'));
    case 'waitforattach':
      return waitForAttach(admin(), arg(args, 0, 'waitforattach <device> <json>'), arg(args, 1, 'waitforattach <device> <json>'));
    case 'detach':
      return detach(admin(), arg(args, 0, 'detach <volume name> <node>'), arg(args, 1, 'detach <volume name> <node>'));
    case 'mountdevice': {
      const usage = 'mountdevice <device mount dir> <device> <json>';
      return mountDevice(admin(), arg(args, 2, usage), dirArg(args, 0, usage, 'device mount dir'));
    }
    case 'unmountdevice':
      return unmountAt(admin(), deviceConsumer(dirArg(args, 0, 'unmountdevice <device mount dir>', 'device mount dir')), 'device mount dir');
    case 'mount': {
      const usage = 'mount <mount dir> <json>';
      return mountPod(admin(), arg(args, 1, usage), dirArg(args, 0, usage, 'mount dir'));
    }
    case 'unmount':
      return unmountAt(admin(), podConsumer(dirArg(args, 0, 'unmount <mount dir>', 'mount dir')), 'mount dir');
    case 'expandvolume': {
      const usage = 'expandvolume <json> <device mount path> <new size> <old size>';
      return expandVolume(admin(), arg(args, 0, usage), arg(args, 2, usage));
    }
    case 'expandfs': {
      const usage = 'expandfs <json> <device> <device mount path> <new size> <old size>';
      return expandFs(admin(), arg(args, 0, usage), arg(args, 3, usage));
    }
    default:
      // Commands of other kubelet versions (e.g. the removed waitfordetach): kubelet's default.
      return cmd === undefined ? failure('usage: berth <init|attach|...> [args]') : notSupported();
  }
}
