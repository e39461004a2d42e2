/**
 * The `btrfs` backend: a volume is the subvolume <pool>/volumes/<id> whose size is
 * enforced by a qgroup limit on referenced bytes; a snapshot is the read-only
 * subvolume <pool>/snapshots/<id> (instant, copy-on-write); clones and volumes restored
 * from a snapshot are writable snapshots, so they are independent subvolumes that
 * share blocks with their origin until either side writes. Deleting a snapshot (or a
 * source volume) therefore never affects volumes made from it.
 *
 * There is no device and no OS mount: the subvolume directory is the volume's path, and
 * the core bind-mounts it where a consumer asks. Expansion raises the qgroup limit,
 * which takes effect at once while the volume is in use (online).
 *
 * qgroup accounting is updated at transaction commit, so a writer can overshoot the
 * limit by what is still in flight before it gets EDQUOT; stats() commits first so its
 * numbers include the latest writes.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  Backend, BackendBase, BackendContext, BackendDriver, BackendRuntimeState, BackendSnapshot, BackendVolume, Cloning, CreateSpec, Expanding,
  MountOptions, MountResult, Progress, Snapshotting,
} from '../../core/backend.js';
import {
  BerthError, failedPrecondition, internal, inUse, invalidArgument, notFound, outOfRange, resourceExhausted,
} from '../../core/errors.js';
import { CommandError, type Exec } from '../../core/os/exec.js';
import {
  BTRFS_SUPER_MAGIC, isBtrfs, isSubvolume, ownQgroup, qgroupLimit, qgroupShow, quotaEnable,
  subvolumeCreate, subvolumeDelete, subvolumeSnapshot,
} from './commands.js';
import { fsUsage } from '../../core/os/fs.js';
import type { BackendCapabilities, Capacity, VolumeStats } from '../../core/types.js';
import { childPath, VOLUME_ID_RE } from '../paths.js';
import { requireOwnNode } from '../node.js';
import { MIN_SIZE, parseBtrfsSettings, type BtrfsSettings } from './settings.js';

/**
 * The btrfs driver and the one program it runs: btrfs (subvolumes and qgroups, ./commands.ts).
 * @example const backends = await createBackends({ config, drivers: { btrfs: btrfsDriver }, exec, log });
 */
export const btrfsDriver: BackendDriver = { binaries: ['btrfs'], create: createBtrfsBackend };

/**
 * Builds a btrfs backend after checking that the pool is on btrfs and that quotas can be
 * enabled there (it enables them).
 * @example const b = await createBtrfsBackend({ name: 'fast', settings: { pool: '/srv/pool' }, stateRoot, exec, log });
 */
export async function createBtrfsBackend(ctx: BackendContext): Promise<Backend> {
  const settings = parseBtrfsSettings(ctx.name, ctx.settings);
  await preparePool(ctx, settings);
  return new BtrfsBackend(ctx.name, settings, ctx.node, ctx.exec);
}

async function preparePool(ctx: BackendContext, s: BtrfsSettings): Promise<void> {
  const field = `backends.${ctx.name}.pool`;
  const st = await stat(s.pool).catch(() => null);
  if (!st?.isDirectory()) throw invalidArgument(field, `${s.pool} does not exist or is not a directory`);
  if (!(await isBtrfs(s.pool))) {
    throw invalidArgument(field, `${s.pool} is not on a btrfs filesystem (statfs type is not 0x${BTRFS_SUPER_MAGIC.toString(16)})`);
  }
  try {
    await quotaEnable(ctx.exec, s.pool);
  } catch (err) {
    throw invalidArgument(field, `cannot enable btrfs quotas on ${s.pool}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Private (core/private-state.ts): the subvolumes inside are what consumers see.
  await mkdir(join(s.pool, 'volumes'), { recursive: true, mode: 0o700 });
  await mkdir(join(s.pool, 'snapshots'), { recursive: true, mode: 0o700 });
  ctx.log.info({ backend: ctx.name, pool: s.pool }, 'btrfs pool ready (quotas enabled)');
}

class BtrfsBackend implements BackendBase, Snapshotting, Cloning, Expanding {
  readonly driver = 'btrfs';
  readonly capabilities = {
    sizeEnforced: true,
    block: false,
    snapshots: true,
    clones: true,
    expansion: 'online',
    fsTypes: [],
    attachable: false,
    fencing: false,
    scope: 'local',
  } as const satisfies BackendCapabilities;

  readonly #volumesDir: string;
  readonly #snapshotsDir: string;

  constructor(
    readonly name: string,
    readonly settings: BtrfsSettings,
    /** The pool is on this node's disks: mount serves this node only. */
    private readonly node: string,
    private readonly exec: Exec,
  ) {
    this.#volumesDir = join(settings.pool, 'volumes');
    this.#snapshotsDir = join(settings.pool, 'snapshots');
  }

  privateDirs(): readonly string[] {
    return [this.#volumesDir, this.#snapshotsDir];
  }

  describe(): Readonly<Record<string, unknown>> {
    return { pool: this.settings.pool, defaultSize: this.settings.defaultSize, volumes: this.#volumesDir, snapshots: this.#snapshotsDir };
  }

  validateCreate(spec: CreateSpec): CreateSpec {
    if (spec.volumeMode !== 'filesystem') {
      throw invalidArgument('mode', 'btrfs volumes are subvolumes and have no block device; use a loop backend for block volumes');
    }
    if (spec.fsType !== null && spec.fsType !== 'btrfs') {
      throw invalidArgument('fs', `btrfs volumes are btrfs subvolumes; "${spec.fsType}" cannot be chosen here (use a loop backend)`);
    }
    for (const key of Object.keys(spec.options)) {
      throw invalidArgument(`opts.${key}`, 'unknown option: the btrfs backend takes no volume options');
    }
    const sizeBytes = spec.sizeBytes === 0 ? this.settings.defaultSize : spec.sizeBytes;
    if (sizeBytes < MIN_SIZE) throw outOfRange('size', `btrfs volumes must be at least ${MIN_SIZE} bytes (1MiB)`);
    return { sizeBytes, fsType: null, volumeMode: 'filesystem', options: {} };
  }

  async create(vol: BackendVolume): Promise<void> {
    const path = this.#volumePath(vol.id);
    if (!(await isSubvolume(path))) {
      if (await exists(path)) throw internal(`${path} exists but is not a btrfs subvolume; remove it by hand`);
      await this.#run(`create subvolume for ${vol.id}`, () => subvolumeCreate(this.exec, path));
    }
    // Also on a retry after a crash between the two steps.
    await this.#limit(vol.id, path, vol.sizeBytes);
  }

  async delete(vol: BackendVolume): Promise<void> {
    await this.#run(`delete subvolume of ${vol.id}`, () => subvolumeDelete(this.exec, this.#volumePath(vol.id)));
  }

  async mount(vol: BackendVolume, opts: MountOptions): Promise<MountResult> {
    requireOwnNode({ backend: this.name, own: this.node, node: opts.node, op: 'mount' });
    return { path: await this.#existingVolume(vol.id) };
  }

  async unmount(_vol: BackendVolume): Promise<void> {}

  async inspect(vol: BackendVolume): Promise<BackendRuntimeState> {
    const present = await isSubvolume(this.#volumePath(vol.id));
    // No OS mount of its own (like dir): the subvolume directory is the volume's path.
    return { exists: present, device: null, mounted: false };
  }

  async listPresent(): Promise<string[]> {
    const names = await readdir(this.#volumesDir).catch(() => [] as string[]);
    return names.filter((n) => VOLUME_ID_RE.test(n)).sort();
  }

  async capacity(): Promise<Omit<Capacity, 'backend'>> {
    const pool = await fsUsage(this.settings.pool);
    return { totalBytes: pool.totalBytes, availableBytes: pool.availableBytes };
  }

  async stats(vol: BackendVolume): Promise<VolumeStats> {
    const path = this.#volumePath(vol.id);
    const unhealthy = (message: string): VolumeStats => ({
      totalBytes: vol.sizeBytes, usedBytes: 0, availableBytes: 0,
      totalInodes: null, usedInodes: null, availableInodes: null, abnormal: true, message,
    });
    if (!(await isSubvolume(path))) return unhealthy(`subvolume ${path} is missing`);
    let row;
    try {
      // --sync commits the transaction first: without it a volume written in the last ~30 s
      // (the commit interval) shows old numbers, even 0 used. A commit with little dirty data
      // takes milliseconds, and CSI asks for stats about once a minute per volume.
      row = ownQgroup(await qgroupShow(this.exec, path, { sync: true }));
    } catch (err) {
      return unhealthy(`cannot read the qgroup of ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!row) return unhealthy(`subvolume ${path} has no qgroup (quotas disabled?)`);
    const pool = await fsUsage(this.settings.pool);
    const total = row.maxReferencedBytes ?? vol.sizeBytes;
    const used = row.referencedBytes;
    return {
      totalBytes: total,
      usedBytes: used,
      availableBytes: Math.max(0, Math.min(total - used, pool.availableBytes)),
      // btrfs allocates inodes dynamically: there is no inode limit to report.
      totalInodes: null, usedInodes: null, availableInodes: null,
      abnormal: row.maxReferencedBytes === null,
      message: row.maxReferencedBytes === null ? `no qgroup limit on ${path}: size is not enforced` : 'ok',
    };
  }

  async createSnapshot(vol: BackendVolume, snap: BackendSnapshot): Promise<void> {
    const target = this.#snapshotPath(snap.id);
    if (await isSubvolume(target)) return;
    const source = await this.#existingVolume(vol.id);
    await this.#run(`snapshot ${vol.id} as ${snap.id}`, () => subvolumeSnapshot(this.exec, source, target, { readOnly: true }));
  }

  async deleteSnapshot(snap: BackendSnapshot): Promise<void> {
    // Volumes restored from it are independent subvolumes: nothing else to check.
    await this.#run(`delete snapshot ${snap.id}`, () => subvolumeDelete(this.exec, this.#snapshotPath(snap.id)));
  }

  async createFromSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void> {
    if (vol.sizeBytes < snap.sizeBytes) {
      throw outOfRange('size', `must be at least the snapshot's size (${snap.sizeBytes} bytes)`);
    }
    const source = this.#snapshotPath(snap.id);
    await this.#writableCopy(vol, source, async () => {
      if (!(await isSubvolume(source))) throw notFound(`snapshot ${snap.id} is missing from btrfs pool ${this.settings.pool}`);
    });
    onProgress?.(snap.sizeBytes, snap.sizeBytes); // instant: no copy to report on
  }

  async createFromVolume(vol: BackendVolume, source: BackendVolume, onProgress?: Progress): Promise<void> {
    if (vol.sizeBytes < source.sizeBytes) {
      throw outOfRange('size', `must be at least the source volume's size (${source.sizeBytes} bytes)`);
    }
    const sourcePath = this.#volumePath(source.id);
    await this.#writableCopy(vol, sourcePath, async () => {
      await this.#existingVolume(source.id);
    });
    onProgress?.(source.sizeBytes, source.sizeBytes);
  }

  async expand(vol: BackendVolume, newSizeBytes: number, _state: { mounted: boolean; device: string | null }): Promise<void> {
    if (newSizeBytes < MIN_SIZE) throw outOfRange('size', `btrfs volumes must be at least ${MIN_SIZE} bytes (1MiB)`);
    await this.#limit(vol.id, await this.#existingVolume(vol.id), newSizeBytes);
  }

  /** Writable snapshot of `source` as the new volume, with the volume's own limit (a snapshot inherits its origin's). */
  async #writableCopy(vol: BackendVolume, source: string, checkSource: () => Promise<void>): Promise<void> {
    const target = this.#volumePath(vol.id);
    if (!(await isSubvolume(target))) {
      if (await exists(target)) throw internal(`${target} exists but is not a btrfs subvolume; remove it by hand`);
      await checkSource();
      await this.#run(`snapshot ${source} as ${vol.id}`, () => subvolumeSnapshot(this.exec, source, target, { readOnly: false }));
    }
    await this.#limit(vol.id, target, vol.sizeBytes);
  }

  async #limit(id: string, path: string, bytes: number): Promise<void> {
    await this.#run(`set the qgroup limit of ${id}`, () => qgroupLimit(this.exec, path, bytes));
  }

  async #existingVolume(id: string): Promise<string> {
    const path = this.#volumePath(id);
    if (!(await isSubvolume(path))) throw notFound(`volume ${id} has no subvolume at ${path}`);
    return path;
  }

  #volumePath(id: string): string {
    return childPath(this.#volumesDir, id);
  }

  #snapshotPath(id: string): string {
    return childPath(this.#snapshotsDir, id);
  }

  /** Runs one btrfs step, turning command failures into BerthErrors that say what was being done. */
  async #run(what: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      if (err instanceof BerthError || !(err instanceof CommandError)) throw err;
      const text = err.stderrTail;
      if (/No space left|Disk quota exceeded/i.test(text)) throw resourceExhausted(`${what}: btrfs pool ${this.settings.pool} is full: ${text}`);
      if (/resource busy/i.test(text)) throw inUse(`${what}: ${text}`);
      if (/Directory not empty/i.test(text)) {
        // btrfs will not delete a subvolume holding another one (a consumer made it inside).
        throw failedPrecondition(`${what}: it contains a nested btrfs subvolume made inside the volume; delete that first (${text})`);
      }
      throw internal(`${what}: ${err.message}`, err);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
