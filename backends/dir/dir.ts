/**
 * The `dir` driver: a volume is the directory <root>/<volume id>. The embedded default,
 * chosen for speed and zero setup: no device, no OS mount (mount returns the directory
 * itself; the core bind-mounts it where a consumer needs it).
 *
 * It cannot enforce size, and says so plainly: capabilities.sizeEnforced is false and
 * describe() repeats it. A requested size is accepted and recorded (frontends such as
 * CSI always send one) but nothing stops a volume from growing past it; 0 = no size.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import type { Backend, BackendContext, BackendFactory, BackendVolume, CreateSpec } from '../../core/backend.js';
import type { BackendCapabilities, VolumeStats } from '../../core/types.js';
import { invalidArgument, notFound } from '../../core/errors.js';
import { fsUsage } from '../../core/os/fs.js';
import { checkKnownKeys, pathSetting } from '../settings.js';
import { childPath, VOLUME_ID_RE } from '../paths.js';

export interface DirSettings {
  /** Directory holding one subdirectory per volume. Default <stateRoot>/backends/<instance>. */
  readonly root: string;
}

const CAPABILITIES: BackendCapabilities = {
  sizeEnforced: false,
  block: false,
  snapshots: false,
  clones: false,
  expansion: 'none',
  fsTypes: [],
  attachable: false,
  scope: 'local',
};

export function parseDirSettings(ctx: Pick<BackendContext, 'name' | 'settings' | 'stateRoot'>): DirSettings {
  checkKnownKeys(ctx.name, ctx.settings, ['root']);
  return { root: pathSetting(ctx.name, ctx.settings, 'root', `${ctx.stateRoot}/backends/${ctx.name}`) };
}

/**
 * Builds a dir backend; creates its root directory.
 * @example const b = await createDirBackend({ name: 'local', settings: {}, stateRoot: '/var/lib/berth', exec, log });
 */
export const createDirBackend: BackendFactory = async (ctx) => {
  const settings = parseDirSettings(ctx);
  await mkdir(settings.root, { recursive: true, mode: 0o711 });
  return new DirBackend(ctx.name, settings);
};

class DirBackend implements Backend {
  readonly driver = 'dir';
  readonly capabilities = CAPABILITIES;

  constructor(
    readonly name: string,
    private readonly settings: DirSettings,
  ) {}

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

  async create(vol: BackendVolume): Promise<void> {
    await mkdir(this.dir(vol), { recursive: true, mode: 0o755 });
  }

  async delete(vol: BackendVolume): Promise<void> {
    await rm(this.dir(vol), { recursive: true, force: true });
  }

  async attach(): Promise<{ device: null }> {
    return { device: null };
  }

  async detach(): Promise<void> {}

  async mount(vol: BackendVolume): Promise<{ path: string }> {
    const path = this.dir(vol);
    if (!(await isDirectory(path))) throw notFound(`volume ${vol.id} has no directory at ${path}`);
    return { path };
  }

  async unmount(): Promise<void> {}

  async inspect(vol: BackendVolume): Promise<{ exists: boolean; device: null; mounted: boolean }> {
    return { exists: await isDirectory(this.dir(vol)), device: null, mounted: false };
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
