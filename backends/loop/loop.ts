/**
 * The `loop` driver: a volume is the sparse image <root>/<id>.img. attach gives it a loop
 * device (losetup), mount makes the filesystem on first use (blkid finds none) and mounts
 * it at <stateRoot>/mounts/<id>; consumers see <mount>/data so a new volume looks empty.
 * Size is enforced by the device. Block volumes get no filesystem: mount returns the device.
 *
 * Every method looks at the kernel first and converges (reuse the device backing the
 * image, reuse the mount already there), which is what crash recovery relies on.
 * The kernel, not the caller, is the truth for which device backs an image.
 */
import { mkdir, open, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  AttachOptions, AttachResult, Attaching, BackendBase, BackendContext, BackendDriver, BackendFactory, BackendSnapshot, BackendVolume, Cloning, CreateSpec,
  DeclaredCapabilities, Expanding, ExpandOutcome, Fencing, MountOptions, MountResult, Progress, Snapshotting,
} from '../../core/backend.js';
import type { BackendCapabilities, FsType, VolumeStats } from '../../core/types.js';
import type { Exec } from '../../core/os/exec.js';
import type { Logger } from '../../core/log.js';
import { failedPrecondition, internal, invalidArgument, notFound, outOfRange } from '../../core/errors.js';
import { formatSize } from '../../core/spec.js';
import { attachLoop, blockDeviceSize, detachLoop, findLoopDevices, findLoopDevicesUnder, refreshLoopCapacity, stillBacks, type LoopDevice } from '../../core/os/loop.js';
import { FS_GROWS_ONLINE, fsMountOptions, fsUsage, growFilesystem, makeFilesystem, measureFsGrowth, probeFilesystem, readFsMagic, type FsGrowth } from '../../core/os/fs.js';
import { findMount, mount as mountFs, readMountInfo, unmountAll } from '../../core/os/mounts.js';
import { shutdownMount } from '../../core/os/fence.js';
import { childPath, managedMountPath, VOLUME_ID_RE } from '../paths.js';
import { requireOwnNode } from '../node.js';
import { checkLoopMax, parseLoopSettings, validateLoopCreate, type LoopSettings } from './settings.js';
import { copyImage, thaw } from './copy.js';

const CAPABILITIES = {
  sizeEnforced: true,
  block: true,
  snapshots: true,
  clones: true,
  // The image and device always grow while mounted; the filesystem does for xfs and
  // btrfs, ext4 only at its next mount (expand says which through pendingFsGrowth).
  expansion: 'online',
  fsTypes: ['ext4', 'xfs', 'btrfs'],
  attachable: true,
  fencing: true,
  scope: 'local',
} as const satisfies BackendCapabilities;

const IMAGE_SUFFIX = '.img';
const SNAPSHOT_DIR = 'snapshots';
/** The kernel refuses to resize a btrfs to less than 256 MiB (BTRFS_IOC_RESIZE returns EINVAL). */
const BTRFS_MIN_RESIZE = 256 * 1024 * 1024;
/**
 * A filesystem its grow command would make at least this much bigger is grown at mount, and
 * reported as fsGrowthPending until then (less is rounding; see growthDue).
 */
const GROW_SLACK = 1024 * 1024;
/** How long detach waits for the kernel to drop a device it detached lazily (udev still had it open). */
const DETACH_SETTLE_MS = 5_000;

/**
 * The loop driver and the programs it runs: losetup (core/os/loop.ts), blkid and the mkfs /
 * fsck / grow tools of the filesystems it makes (core/os/fs.ts), cp and fsfreeze (copy.ts).
 * Fencing is a system call (core/os/fence.ts), no program.
 * @example const backends = await createBackends({ config, drivers: { loop: loopDriver }, exec, log });
 */
export const loopDriver: BackendDriver = {
  binaries: [
    'losetup', 'blkid', 'mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'e2fsck', 'resize2fs', 'xfs_growfs', 'btrfs', 'cp', 'fsfreeze',
  ],
  create: (ctx) => createLoopBackend(ctx),
};

/**
 * Builds a loop backend; creates its image root.
 * @example const b = await createLoopBackend({ name: 'fast', settings: { defaultFs: 'xfs' }, stateRoot, exec, log });
 */
export const createLoopBackend: BackendFactory = async (ctx) => {
  const settings = parseLoopSettings(ctx);
  // Private (core/private-state.ts): images, snapshots and the managed mounts; consumers
  // see mounts/<id>/data through bind mounts.
  await mkdir(join(settings.root, SNAPSHOT_DIR), { recursive: true, mode: 0o700 });
  await mkdir(join(ctx.stateRoot, 'mounts'), { recursive: true, mode: 0o700 });
  return new LoopBackend(ctx, settings);
};

export class LoopBackend implements BackendBase, Attaching, Snapshotting, Cloning, Expanding, Fencing {
  readonly driver = 'loop';
  readonly capabilities: DeclaredCapabilities<typeof CAPABILITIES>;
  readonly name: string;
  /** Loop devices and mounts are in this node's kernel: attach and mount serve this node only. */
  private readonly node: string;
  private readonly exec: Exec;
  private readonly log: Logger;
  private readonly stateRoot: string;

  constructor(
    ctx: BackendContext,
    private readonly settings: LoopSettings,
  ) {
    this.capabilities = settings.shared ? { ...CAPABILITIES, scope: 'global' } : CAPABILITIES;
    this.name = ctx.name;
    this.exec = ctx.exec;
    this.log = ctx.log;
    this.stateRoot = ctx.stateRoot;
    this.node = ctx.node;
  }

  privateDirs(): readonly string[] {
    return [this.settings.root, join(this.settings.root, SNAPSHOT_DIR), join(this.stateRoot, 'mounts')];
  }

  describe(): Readonly<Record<string, unknown>> {
    return {
      root: this.settings.root,
      mounts: join(this.stateRoot, 'mounts'),
      defaultSize: this.settings.defaultSize,
      defaultFs: this.settings.defaultFs,
      sizeEnforced: true,
      expansion: { xfs: 'online', btrfs: 'online (to 256MiB or more)', ext4: 'offline: grows at the next mount' },
      snapshots: 'image copies (reflink where the image filesystem supports it)',
    };
  }

  validateCreate(spec: CreateSpec): CreateSpec {
    return validateLoopCreate(this.settings, spec);
  }

  image(vol: Pick<BackendVolume, 'id'>): string {
    return childPath(this.settings.root, vol.id, IMAGE_SUFFIX);
  }

  snapshotImage(snap: Pick<BackendSnapshot, 'id'>): string {
    return childPath(join(this.settings.root, SNAPSHOT_DIR), snap.id, IMAGE_SUFFIX);
  }

  mountPoint(vol: Pick<BackendVolume, 'id'>): string {
    return managedMountPath(this.stateRoot, vol.id);
  }

  /**
   * Creates the sparse image, or grows a short one left by a crash; never shrinks. A size
   * the image's filesystem cannot hold in one file is OutOfRange naming `size`.
   */
  async create(vol: BackendVolume): Promise<void> {
    checkLoopMax(vol.sizeBytes);
    const size = imageSize(vol.sizeBytes);
    const fh = await open(this.image(vol), 'a', 0o600);
    try {
      if ((await fh.stat()).size < size) await fh.truncate(size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EFBIG') throw err;
      throw outOfRange('size', `${formatSize(vol.sizeBytes)} is more than the filesystem holding ${this.settings.root} allows in one file (the volume's image)`);
    } finally {
      await fh.close();
    }
  }

  /** Tears down whatever is left (mount, devices), then removes the image. */
  async delete(vol: BackendVolume): Promise<void> {
    if (vol.volumeMode === 'filesystem') await this.unmount(vol);
    await this.detachAll(vol);
    await rm(`${this.image(vol)}.partial`, { force: true }); // a copy a crash interrupted
    await rm(this.image(vol), { force: true });
  }

  async attach(vol: BackendVolume, opts: AttachOptions): Promise<AttachResult> {
    requireOwnNode({ backend: this.name, own: this.node, node: opts.node, op: 'attach' });
    const image = this.image(vol);
    // Independent reads side by side: each is a trip through libuv's thread pool.
    const [existing, present] = await Promise.all([this.devices(vol), exists(image)]);
    if (existing[0]) return { device: existing[0].name };
    if (!present) throw notFound(`volume ${vol.id} has no image at ${image}`);
    const device = await attachLoop(this.exec, image);
    this.log.debug({ volume: vol.id, device }, 'loop device attached');
    return { device };
  }

  async detach(vol: BackendVolume): Promise<void> {
    const [mounted, devs] = await Promise.all([
      vol.volumeMode === 'filesystem' ? findMount(this.mountPoint(vol)) : null,
      findLoopDevices(this.exec, this.image(vol)),
    ]);
    if (mounted) {
      throw failedPrecondition(`volume ${vol.id} is still mounted at ${this.mountPoint(vol)}: unmount it before detaching`);
    }
    await this.detachAll(vol, devs);
  }

  async mount(vol: BackendVolume, opts: MountOptions): Promise<MountResult> {
    requireOwnNode({ backend: this.name, own: this.node, node: opts.node, op: 'mount' });
    if (vol.volumeMode === 'block') return { path: await this.attachedDevice(vol, opts.device) };
    const fsType = requireFs(vol);
    const target = this.mountPoint(vol);
    const data = join(target, 'data');
    const [mounted, devs] = await Promise.all([findMount(target), this.devices(vol)]);
    if (mounted) {
      await thaw(this.exec, target); // a crash during a snapshot copy may have left it frozen
      await mkdir(data, { recursive: true, mode: 0o755 });
      return { path: data };
    }
    const device = this.pickDevice(vol, devs, opts.device);
    const { growOnline } = await this.prepareFilesystem(vol, fsType, device);
    await mkdir(target, { recursive: true, mode: 0o700 });
    const options = [...fsMountOptions(fsType)];
    if (vol.options['discard'] === 'true') options.push('discard');
    try {
      await mountFs(this.exec, device, target, { fsType, options });
      await mkdir(data, { recursive: true, mode: 0o755 });
    } catch (err) {
      await unmountAll(this.exec, target).catch(() => undefined);
      throw internal(`mounting ${vol.id} (${device}) at ${target} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (growOnline) {
      // The image grew while unmounted (expand, or a restore into a bigger volume). A failed
      // grow leaves a smaller but working filesystem, so it is logged, not fatal.
      await growFilesystem(this.exec, fsType, { device, mountpoint: target }).then(
        () => this.log.info({ volume: vol.id, fs: fsType }, 'filesystem grown to its device at mount'),
        (err: unknown) => this.log.warn({ volume: vol.id, err }, 'filesystem could not grow to its device'),
      );
    }
    return { path: data };
  }

  /**
   * Fencing (cluster mode): shuts the volume's filesystem down where it is mounted here, so
   * nothing on this node writes to the image again (open files included). A block volume has
   * no filesystem to shut down: not fenced here (false).
   */
  async fence(vol: BackendVolume): Promise<boolean> {
    if (vol.volumeMode === 'block') return false;
    const target = this.mountPoint(vol);
    const mounted = await findMount(target);
    if (!mounted) return false;
    const how = await shutdownMount(mounted);
    this.log.warn({ volume: vol.id, mount: target, device: mounted.source, how }, 'fenced: the filesystem is shut down; every further write fails');
    return true;
  }

  /** Whether a loop device of this node backs the volume's image (cluster mode: the node guard asks). */
  async attachedHere(vol: BackendVolume): Promise<boolean> {
    return (await this.devices(vol)).length > 0;
  }

  async unmount(vol: BackendVolume): Promise<void> {
    if (vol.volumeMode === 'block') return;
    const target = this.mountPoint(vol);
    await unmountAll(this.exec, target);
    await rmdir(target).catch(() => undefined);
  }

  async inspect(vol: BackendVolume): Promise<{ exists: boolean; device: string | null; mounted: boolean }> {
    const [present, devs, mounted] = await Promise.all([
      exists(this.image(vol)),
      this.devices(vol),
      vol.volumeMode === 'filesystem' ? findMount(this.mountPoint(vol)).then((m) => m !== null) : false,
    ]);
    return { exists: present, device: devs[0]?.name ?? null, mounted };
  }

  /** Ids of images in the root, of devices backed by files in the root, of managed mounts of those devices. */
  async listPresent(): Promise<string[]> {
    const ids = new Set<string>();
    for (const e of await readdir(this.settings.root).catch(() => [] as string[])) {
      const id = idFromImageName(e);
      if (id) ids.add(id);
    }
    const ours = await findLoopDevicesUnder(this.exec, this.settings.root);
    for (const d of ours) {
      const id = idFromImageName(d.backFile.slice(this.settings.root.length + 1));
      if (id) ids.add(id);
    }
    const devices = new Set(ours.map((d) => d.name));
    const mountsDir = join(this.stateRoot, 'mounts') + '/';
    for (const m of await readMountInfo()) {
      if (!m.target.startsWith(mountsDir) || !devices.has(m.source)) continue;
      const id = m.target.slice(mountsDir.length);
      if (VOLUME_ID_RE.test(id)) ids.add(id);
    }
    return [...ids].sort();
  }

  async capacity(): Promise<{ totalBytes: number; availableBytes: number }> {
    const u = await fsUsage(this.settings.root);
    return { totalBytes: u.totalBytes, availableBytes: u.availableBytes };
  }

  /**
   * statfs of the mounted filesystem; when not mounted (or block), the image's allocated blocks.
   * Filesystem volumes also get fsGrowthPending: whether the filesystem has yet to grow to its
   * device (ext4 expanded while mounted, or an unmounted one expanded or restored bigger),
   * measured from its superblock, not guessed from statfs; left out while there is no
   * filesystem yet (never mounted) and for block volumes.
   */
  async stats(vol: BackendVolume): Promise<VolumeStats> {
    const target = this.mountPoint(vol);
    const mount = vol.volumeMode === 'filesystem' ? await findMount(target) : null;
    if (mount) {
      const [usage, growth] = await Promise.all([
        fsUsage(target),
        blockDeviceSize(mount.source).then((size) => measureFsGrowth(mount.source, size, target)),
      ]);
      return { ...usage, ...growthField(growth), abnormal: false, message: 'usage of the mounted filesystem' };
    }
    const image = this.image(vol);
    const st = await stat(image).catch(() => null);
    if (!st) {
      return { totalBytes: 0, usedBytes: 0, availableBytes: 0, totalInodes: null, usedInodes: null, availableInodes: null, abnormal: true, message: `image ${image} is missing` };
    }
    const used = Math.min(st.blocks * 512, st.size);
    // Unmounted, the image itself is current (unmount flushed the filesystem through the device).
    const growth = vol.volumeMode === 'filesystem' && st.blocks > 0 ? await measureFsGrowth(image, st.size, null) : null;
    return {
      totalBytes: st.size,
      usedBytes: used,
      availableBytes: st.size - used,
      totalInodes: null,
      usedInodes: null,
      availableInodes: null,
      ...growthField(growth),
      abnormal: false,
      message: vol.volumeMode === 'block' ? 'block volume: bytes allocated in the sparse image' : 'not mounted: bytes allocated in the sparse image',
    };
  }

  // ---- helpers (callers hold the core's per-volume lock) ----

  /** Live devices backing the image (a device whose image was deleted is not "attached"). */
  private async devices(vol: BackendVolume): Promise<LoopDevice[]> {
    return (await findLoopDevices(this.exec, this.image(vol))).filter((d) => !d.deleted);
  }

  /** The device to use: the kernel's, preferring the one the core recorded. */
  private async attachedDevice(vol: BackendVolume, hint: string | null): Promise<string> {
    return this.pickDevice(vol, await this.devices(vol), hint);
  }

  private pickDevice(vol: BackendVolume, devs: readonly LoopDevice[], hint: string | null): string {
    const hit = devs.find((d) => d.name === hint) ?? devs[0];
    if (!hit) throw failedPrecondition(`volume ${vol.id} is not attached: attach it before mounting`);
    return hit.name;
  }

  /** Detaches every device backing the image; `known` is a listing the caller just read. */
  private async detachAll(vol: BackendVolume, known?: LoopDevice[]): Promise<void> {
    const image = this.image(vol);
    const deadline = Date.now() + DETACH_SETTLE_MS;
    for (let first = true; ; first = false) {
      const devs = first && known ? known : await findLoopDevices(this.exec, image);
      if (devs.length === 0) return;
      for (const d of devs) await detachLoop(this.exec, d.name);
      // Only the devices just detached can still back the image (a lazy detach while udev
      // holds one open): re-read their backing_file rather than scan every loop device.
      const left = await Promise.all(devs.map((d) => stillBacks(this.exec, d.name, image)));
      if (!left.includes(true)) return;
      if (Date.now() > deadline) {
        throw internal(`loop devices ${devs.map((d) => d.name).join(', ')} for ${vol.id} are still attached (open elsewhere?)`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Makes the filesystem on a device that has none; refuses a device holding something
   * else; grows an ext4 smaller than its device before mounting (the offline half of
   * expansion) and tells the caller when xfs/btrfs must grow once mounted.
   */
  private async prepareFilesystem(vol: BackendVolume, fsType: FsType, device: string): Promise<{ growOnline: boolean }> {
    // Remounts are the common case: our own magic answers them without a process.
    if ((await readFsMagic(device)) !== fsType) {
      // An image with no allocated blocks was never written, so it holds no signature
      // anywhere: blkid (a ~10 ms process) is only asked about images that hold data.
      const probe = (await this.neverWritten(vol)) ? null : await probeFilesystem(this.exec, device);
      if (probe) throw failedPrecondition(`volume ${vol.id} holds ${probe.type}, not ${fsType}: refusing to mount or overwrite it`);
      await makeFilesystem(this.exec, fsType, device);
      this.log.info({ volume: vol.id, device, fs: fsType }, 'filesystem made on first use');
      return { growOnline: false };
    }
    const devSize = await blockDeviceSize(device);
    const growth = await measureFsGrowth(device, devSize, null);
    if (!growth || !growthDue(growth)) return { growOnline: false };
    if (FS_GROWS_ONLINE[fsType]) return { growOnline: !(fsType === 'btrfs' && devSize < BTRFS_MIN_RESIZE) };
    await growFilesystem(this.exec, fsType, { device, mountpoint: null });
    this.log.info({ volume: vol.id, from: growth.sizeBytes, to: growth.grownBytes }, `${fsType} grown offline before mount`);
    return { growOnline: false };
  }

  /** The sparse image has no data blocks at all (fresh from create, or all holes). */
  private async neverWritten(vol: BackendVolume): Promise<boolean> {
    const st = await stat(this.image(vol)).catch(() => null);
    return st !== null && st.blocks === 0;
  }

  // ---- snapshots, clones, expansion ----

  async createSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void> {
    const src = this.image(vol);
    if (!(await exists(src))) throw notFound(`volume ${vol.id} has no image at ${src}`);
    const freeze = vol.volumeMode === 'filesystem' ? this.mountPoint(vol) : null;
    await copyImage(this.exec, src, this.snapshotImage(snap), { freeze, onProgress });
  }

  async deleteSnapshot(snap: BackendSnapshot): Promise<void> {
    const img = this.snapshotImage(snap);
    await rm(`${img}.partial`, { force: true });
    await rm(img, { force: true });
  }

  async createFromSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void> {
    const src = this.snapshotImage(snap);
    if (!(await exists(src))) throw notFound(`snapshot ${snap.id} has no image at ${src}`);
    await this.checkCopyTarget(vol, src, snap.sizeBytes);
    await copyImage(this.exec, src, this.image(vol), { freeze: null, onProgress });
    await this.create(vol); // grows the copy to the new volume's size; the fs follows at mount
  }

  async createFromVolume(vol: BackendVolume, source: BackendVolume, onProgress?: Progress): Promise<void> {
    const src = this.image(source);
    if (!(await exists(src))) throw notFound(`volume ${source.id} has no image at ${src}`);
    await this.checkCopyTarget(vol, src, source.sizeBytes);
    const freeze = source.volumeMode === 'filesystem' ? this.mountPoint(source) : null;
    await copyImage(this.exec, src, this.image(vol), { freeze, onProgress });
    await this.create(vol);
  }

  /**
   * Grows the image, then every device backing it (losetup -c), then the mounted
   * filesystem: xfs and btrfs online; ext4 at its next mount (pendingFsGrowth).
   */
  async expand(vol: BackendVolume, newSizeBytes: number, _state: { mounted: boolean; device: string | null }): Promise<ExpandOutcome> {
    if (vol.fsType === 'btrfs' && newSizeBytes < BTRFS_MIN_RESIZE) {
      throw outOfRange('size', `a btrfs volume grows only to 256MiB or more (the kernel refuses smaller resizes), asked ${newSizeBytes} bytes`);
    }
    const image = this.image(vol);
    if (!(await exists(image))) throw notFound(`volume ${vol.id} has no image at ${image}`);
    await this.create({ ...vol, sizeBytes: newSizeBytes });
    const devs = await this.devices(vol);
    for (const d of devs) await refreshLoopCapacity(this.exec, d.name);
    if (vol.volumeMode === 'block' || !vol.fsType) return { pendingFsGrowth: false };
    const target = this.mountPoint(vol);
    const mount = await findMount(target);
    if (!mount) return { pendingFsGrowth: false }; // grows when next mounted (prepareFilesystem)
    if (!FS_GROWS_ONLINE[vol.fsType]) return { pendingFsGrowth: true };
    await growFilesystem(this.exec, vol.fsType, { device: mount.source, mountpoint: target });
    return { pendingFsGrowth: false };
  }

  /** A copy must keep its filesystem type, and a btrfs copy must be growable to its size. */
  private async checkCopyTarget(vol: BackendVolume, src: string, sourceSize: number): Promise<void> {
    if (vol.volumeMode === 'filesystem') {
      const holds = await readFsMagic(src);
      if (holds && holds !== vol.fsType) throw invalidArgument('fs', `the source holds ${holds}, so the new volume must be ${holds}, not ${vol.fsType}`);
    }
    if (vol.fsType === 'btrfs' && vol.sizeBytes > sourceSize && vol.sizeBytes < BTRFS_MIN_RESIZE) {
      throw outOfRange('size', `a btrfs copy can grow only to 256MiB or more; keep the source's size (${sourceSize} bytes) or ask 256MiB+`);
    }
  }
}

/**
 * Whether growing the filesystem would make it meaningfully bigger: the one rule both
 * mount (grow now) and stats (fsGrowthPending) use, so they never disagree.
 */
function growthDue(g: FsGrowth): boolean {
  return g.grownBytes - g.sizeBytes >= GROW_SLACK;
}

function growthField(g: FsGrowth | null): { fsGrowthPending?: boolean } {
  return g ? { fsGrowthPending: growthDue(g) } : {};
}

/** Image size for a requested size: whole 512-byte sectors, as a loop device only sees those. */
export function imageSize(sizeBytes: number): number {
  return Math.ceil(sizeBytes / 512) * 512;
}

function idFromImageName(name: string): string | null {
  if (!name.endsWith(IMAGE_SUFFIX)) return null;
  const id = name.slice(0, -IMAGE_SUFFIX.length);
  return VOLUME_ID_RE.test(id) ? id : null;
}

function requireFs(vol: BackendVolume): FsType {
  if (!vol.fsType) throw internal(`filesystem volume ${vol.id} has no filesystem type`);
  return vol.fsType;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
