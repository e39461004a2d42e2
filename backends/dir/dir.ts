/**
 * The `dir` driver: a volume is the directory <root>/<volume id>. The embedded default,
 * chosen for speed and zero setup: no device, no OS mount (mount returns the directory
 * itself; the core bind-mounts it where a consumer needs it).
 *
 * It cannot enforce size, and says so plainly: capabilities.sizeEnforced is false and
 * describe() repeats it. A requested size is accepted and recorded (frontends such as
 * CSI always send one) but nothing stops a volume from growing past it; 0 = no size.
 * For the same reason expand only records the new size (it succeeds at once, online).
 *
 * Snapshots and clones are copies of the directory tree (`cp -a --reflink=auto`: instant
 * where the filesystem has reflinks), made under a .partial name and renamed into place.
 * A copy of a volume in use is not atomic: files written during the copy may or may not
 * be in it, as with any file-level copy.
 *
 * Delete renames the directory into <root>/.trash (atomic, one syscall) and removes the
 * tree in the background: Docker waits for `volume rm` (up to 2 minutes), and a walk of a
 * large tree is not something a caller should wait for, nor a small one worth several
 * round trips through the thread pool. What a crash leaves in .trash is removed when the
 * backend starts again.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type {
  BackendBase, BackendContext, BackendDriver, DeclaredCapabilities, BackendFactory, BackendSnapshot, BackendVolume, Cloning, CreateSpec, Expanding, ExpandOutcome, MountOptions, Progress, Snapshotting,
} from '../../core/backend.js';
import type { Exec } from '../../core/os/exec.js';
import type { Logger } from '../../core/log.js';
import type { BackendCapabilities, VolumeStats } from '../../core/types.js';
import { internal, invalidArgument, notFound } from '../../core/errors.js';
import { fsUsage } from '../../core/os/fs.js';
import { checkKnownKeys, pathSetting, sharedSetting } from '../settings.js';
import { childPath, VOLUME_ID_RE } from '../paths.js';
import { requireOwnNode } from '../node.js';
import { allocatedTreeBytes, watchCopy } from '../copy-progress.js';

export interface DirSettings {
  /** Directory holding one subdirectory per volume. Default <stateRoot>/backends/<instance>. */
  readonly root: string;
  /** The root is reachable at the same path from every node (settings.ts sharedSetting). */
  readonly shared: boolean;
}

const SNAPSHOT_DIR = 'snapshots';
/** Deleted trees waiting for their background removal (same filesystem: rename is atomic). */
const TRASH_DIR = '.trash';
const COPY_TIMEOUT_MS = 3_600_000;

const CAPABILITIES = {
  sizeEnforced: false,
  block: false,
  snapshots: true,
  clones: true,
  expansion: 'online',
  fsTypes: [],
  attachable: false,
  fencing: false,
  scope: 'local',
} as const satisfies BackendCapabilities;

export function parseDirSettings(ctx: Pick<BackendContext, 'name' | 'settings' | 'stateRoot'>): DirSettings {
  checkKnownKeys(ctx.name, ctx.settings, ['root', 'shared']);
  return {
    root: pathSetting(ctx.name, ctx.settings, 'root', `${ctx.stateRoot}/backends/${ctx.name}`),
    shared: sharedSetting(ctx.name, ctx.settings),
  };
}

/**
 * The dir driver and the one program it runs: cp, for snapshots and clones.
 * @example const backends = await createBackends({ config, drivers: { dir: dirDriver }, exec, log });
 */
export const dirDriver: BackendDriver = { binaries: ['cp'], create: (ctx) => createDirBackend(ctx) };

/**
 * Builds a dir backend; creates its root directory.
 * @example const b = await createDirBackend({ name: 'local', settings: {}, stateRoot: '/var/lib/berth', exec, log });
 */
export const createDirBackend: BackendFactory = async (ctx) => {
  const settings = parseDirSettings(ctx);
  // Private (core/private-state.ts): the volume directories inside are what consumers see.
  await mkdir(join(settings.root, SNAPSHOT_DIR), { recursive: true, mode: 0o700 });
  await mkdir(join(settings.root, TRASH_DIR), { recursive: true, mode: 0o700 });
  const backend = new DirBackend(ctx.name, settings, ctx.node, ctx.exec, ctx.log);
  backend.emptyTrash();
  return backend;
};

class DirBackend implements BackendBase, Snapshotting, Cloning, Expanding {
  readonly driver = 'dir';
  readonly capabilities: DeclaredCapabilities<typeof CAPABILITIES>;

  constructor(
    readonly name: string,
    private readonly settings: DirSettings,
    private readonly node: string,
    private readonly exec: Exec,
    private readonly log: Logger,
  ) {
    this.capabilities = settings.shared ? { ...CAPABILITIES, scope: 'global' } : CAPABILITIES;
  }

  /** Removes what earlier deletes left in the trash (a crash mid-removal); in the background. */
  emptyTrash(): void {
    const trash = join(this.settings.root, TRASH_DIR);
    void readdir(trash)
      .then((names) => Promise.all(names.map((n) => this.removeInBackground(join(trash, n)))))
      .catch((err: unknown) => this.log.warn({ err, trash }, 'dir backend: could not empty the trash'));
  }

  private removeInBackground(path: string): Promise<void> {
    return rm(path, { recursive: true, force: true })
      .catch((err: unknown) => this.log.warn({ err, path }, 'dir backend: removing a deleted tree failed; retried at the next start'));
  }

  /**
   * Takes `path` away at once (rename into the trash) and removes the tree in the background.
   * Missing: nothing to do. Where a rename cannot work (EXDEV: something is mounted there),
   * the tree is removed in place before returning.
   */
  private async discard(path: string): Promise<void> {
    const grave = join(this.settings.root, TRASH_DIR, `${basename(path)}-${randomBytes(4).toString('hex')}`);
    try {
      await rename(path, grave);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EXDEV' && code !== 'EBUSY') throw err;
      await rm(path, { recursive: true, force: true });
      return;
    }
    void this.removeInBackground(grave);
  }

  privateDirs(): readonly string[] {
    return [this.settings.root, join(this.settings.root, SNAPSHOT_DIR), join(this.settings.root, TRASH_DIR)];
  }

  describe(): Readonly<Record<string, unknown>> {
    return {
      root: this.settings.root,
      sizeEnforced: false,
      note: 'volumes are plain directories; sizes are recorded but not enforced',
    };
  }

  validateCreate(spec: CreateSpec): CreateSpec {
    if (spec.volumeMode !== 'filesystem') throw invalidArgument('mode', 'the dir backend has no block volumes (use a loop backend)');
    if (spec.fsType !== null) throw invalidArgument('fs', `the dir backend makes no filesystem, so "${spec.fsType}" cannot be honoured (use a loop backend)`);
    for (const key of Object.keys(spec.options)) throw invalidArgument(`opts.${key}`, 'the dir backend takes no options');
    return spec;
  }

  private dir(vol: Pick<BackendVolume, 'id'>): string {
    return childPath(this.settings.root, vol.id);
  }

  /** The volume's root: 0755 like Docker's _data (its parent, the backend root, is private). */
  async create(vol: BackendVolume): Promise<void> {
    await mkdir(this.dir(vol), { recursive: true, mode: 0o755 });
  }

  async delete(vol: BackendVolume): Promise<void> {
    await Promise.all([this.discard(`${this.dir(vol)}.partial`), this.discard(this.dir(vol))]);
  }

  private snapshotDir(snap: Pick<BackendSnapshot, 'id'>): string {
    return childPath(join(this.settings.root, SNAPSHOT_DIR), snap.id);
  }

  async createSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void> {
    await this.copyTree(this.dir(vol), this.snapshotDir(snap), `volume ${vol.id}`, onProgress);
  }

  async deleteSnapshot(snap: BackendSnapshot): Promise<void> {
    await Promise.all([this.discard(`${this.snapshotDir(snap)}.partial`), this.discard(this.snapshotDir(snap))]);
  }

  async createFromSnapshot(vol: BackendVolume, snap: BackendSnapshot, onProgress?: Progress): Promise<void> {
    await this.copyTree(this.snapshotDir(snap), this.dir(vol), `snapshot ${snap.id}`, onProgress);
  }

  async createFromVolume(vol: BackendVolume, source: BackendVolume, onProgress?: Progress): Promise<void> {
    await this.copyTree(this.dir(source), this.dir(vol), `volume ${source.id}`, onProgress);
  }

  /** Sizes are not enforced, so there is nothing to grow: the new size is only recorded. */
  async expand(): Promise<ExpandOutcome> {
    return { pendingFsGrowth: false };
  }

  /**
   * Copies a tree into `dst` unless `dst` exists (a finished copy is kept: idempotent).
   * cp reports nothing while it runs, so when someone listens the progress is the copy's
   * allocated bytes against the source's, both measured by walking the trees.
   */
  private async copyTree(src: string, dst: string, what: string, onProgress?: Progress): Promise<void> {
    if (await isDirectory(dst)) return;
    if (!(await isDirectory(src))) throw notFound(`${what} has no directory at ${src}`);
    const tmp = `${dst}.partial`;
    await rm(tmp, { recursive: true, force: true });
    const total = onProgress ? await allocatedTreeBytes(src) : 0;
    const watch = watchCopy({ total, measure: () => allocatedTreeBytes(tmp), onProgress });
    try {
      // "src/." copies the contents into tmp, which cp creates with src's mode and owner.
      await this.exec({ bin: 'cp', args: ['-a', '--reflink=auto', '--', `${src}/.`, tmp], timeoutMs: COPY_TIMEOUT_MS });
      await rename(tmp, dst);
      watch.finish();
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw internal(`copying ${what} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    } finally {
      watch.stop();
    }
  }

  /** The directory itself; on a root local to this node, only for this node. */
  async mount(vol: BackendVolume, opts: MountOptions): Promise<{ path: string }> {
    if (!this.settings.shared) requireOwnNode({ backend: this.name, own: this.node, node: opts.node, op: 'mount' });
    const path = this.dir(vol);
    if (!(await isDirectory(path))) throw notFound(`volume ${vol.id} has no directory at ${path}`);
    return { path };
  }

  async unmount(): Promise<void> {}

  async inspect(vol: BackendVolume): Promise<{ exists: boolean; device: null; mounted: boolean }> {
    return { exists: await isDirectory(this.dir(vol)), device: null, mounted: false };
  }

  /** rmdir: atomic, and refused (ENOTEMPTY, EBUSY) for a directory that holds anything or is mounted on. */
  async discardIfEmpty(vol: BackendVolume): Promise<boolean> {
    return rmdir(this.dir(vol)).then(() => true, (err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EBUSY' || code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw err;
    });
  }

  async listPresent(): Promise<string[]> {
    const entries = await readdir(this.settings.root, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory() && VOLUME_ID_RE.test(e.name)).map((e) => e.name).sort();
  }

  async capacity(): Promise<{ totalBytes: number; availableBytes: number }> {
    const u = await fsUsage(this.settings.root);
    return { totalBytes: u.totalBytes, availableBytes: u.availableBytes };
  }

  /**
   * statfs of the filesystem holding the root, not a walk of the volume: a du-like walk
   * costs time proportional to the number of files and CSI asks for stats every minute
   * per volume. The numbers are therefore the shared filesystem's, and the message says so.
   */
  async stats(vol: BackendVolume): Promise<VolumeStats> {
    const path = this.dir(vol);
    if (!(await isDirectory(path))) {
      return { totalBytes: 0, usedBytes: 0, availableBytes: 0, totalInodes: null, usedInodes: null, availableInodes: null, abnormal: true, message: `volume directory ${path} is missing` };
    }
    const u = await fsUsage(path);
    return { ...u, abnormal: false, message: 'dir volume: usage of the shared filesystem holding the backend root (size not enforced)' };
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}
