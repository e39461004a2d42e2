/**
 * The fake backend: an in-memory backend for unit tests of the core and the frontends.
 * - Records every call (`calls`), so tests can assert what the core asked for.
 * - Fault hooks are explicit: `failNext('mount')` makes the next mount throw (no magic names).
 * - Capabilities are configurable, so one fake plays `dir`-like or `loop`-like backends.
 * - With `root`, volumes get real directories (and block "devices" are regular files) so
 *   the core's real bind mounts can be exercised; without it, paths are synthetic.
 * - Its runtime state (what exists / is attached / is mounted) lives in a `FakeState` that
 *   can be handed to a second instance, which is how tests simulate a daemon restart with
 *   the "kernel" state left as the crash left it.
 */
import { lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type {
  Attaching, AttachResult, Backend, BackendBase, BackendContext, BackendDriver, BackendRuntimeState, BackendSnapshot, BackendVolume, Cloning, CreateSpec,
  Expanding, MountResult, Snapshotting,
} from '../../core/backend.js';
import { BerthError, failedPrecondition, invalidArgument, notFound, outOfRange } from '../../core/errors.js';
import type { BackendCapabilities, FsType, VolumeStats } from '../../core/types.js';
import { requireOwnNode } from '../../backends/node.js';

export const FAKE_METHODS = [
  'create', 'delete', 'attach', 'detach', 'mount', 'unmount', 'inspect', 'listPresent', 'discardIfEmpty', 'capacity', 'stats',
  'createSnapshot', 'deleteSnapshot', 'createFromSnapshot', 'createFromVolume', 'expand',
] as const;
export type FakeMethod = (typeof FAKE_METHODS)[number];

export interface FakeVolumeState {
  sizeBytes: number;
  device: string | null;
  mounted: boolean;
  /** Id of the snapshot / volume it was filled from. */
  filledFrom: string | null;
  /** Something was written to it (discardIfEmpty keeps it). */
  data?: boolean;
}

/** What "the kernel and the disk" hold for this backend; survives a simulated restart. */
export interface FakeState {
  readonly volumes: Map<string, FakeVolumeState>;
  readonly snapshots: Map<string, BackendSnapshot>;
  nextDevice: number;
}

/**
 * State a fake backend keeps; pass the same object to a second backend to model a restart.
 * @example const state = createFakeState(); const before = createFakeBackend({ state }); const after = createFakeBackend({ state });
 */
export const createFakeState = (): FakeState => ({ volumes: new Map(), snapshots: new Map(), nextDevice: 0 });

export interface FakeCall {
  readonly method: FakeMethod;
  /** Volume or snapshot id the call was about. */
  readonly id: string | null;
}

export interface FakeBackendOptions {
  readonly name?: string;
  readonly capabilities?: Partial<BackendCapabilities>;
  /** Real directory for volume data / block files; synthetic paths when absent. */
  readonly root?: string;
  readonly state?: FakeState;
  /**
   * The node it runs on: with scope 'local', attach and mount for another node are refused
   * (FailedPrecondition "node"), as the real drivers do. Absent: any node is accepted.
   */
  readonly node?: string;
  /** Option keys validateCreate accepts (others -> InvalidArgument "opts.<key>"). Default ["tier"]. */
  readonly knownOptions?: readonly string[];
  /** Size used when the request gives none (0). Default 0 unless sizeEnforced (then 64 MiB). */
  readonly defaultSizeBytes?: number;
  /** Refused below this size (OutOfRange "size"), to test minimums. Default 0. */
  readonly minSizeBytes?: number;
  /** What expand returns (default nothing: the core derives pendingFsGrowth from capabilities). */
  readonly expandOutcome?: (state: { mounted: boolean; device: string | null }) => { pendingFsGrowth: boolean };
  /** Delay every async call by this many ms (tests of concurrency/serialization). */
  readonly delayMs?: number;
  /**
   * Offer discardIfEmpty, as the dir driver does: removes a volume that holds nothing (not
   * filled from a source, no `data`, not mounted, no device).
   */
  readonly discardsEmpty?: boolean;
}

/** What a test drives the fake with, beside the backend contract. */
export interface FakeControls {
  readonly calls: FakeCall[];
  readonly state: FakeState;
  /** The next call of `method` throws `err` (default Internal "injected fault"). Queued per method. */
  failNext(method: FakeMethod, err?: Error): void;
  /**
   * The next call of `method` stops before doing anything until `release()`; `reached`
   * resolves once it is stopped there. Lets tests hold an operation mid-way without sleeps.
   */
  holdNext(method: FakeMethod): { reached: Promise<void>; release: () => void };
  /** Calls made to `method`, as ids. */
  callsTo(method: FakeMethod): (string | null)[];
  resetCalls(): void;
}

export type FakeBackend = Backend & FakeControls;

const DEFAULT_CAPABILITIES: BackendCapabilities = {
  sizeEnforced: false,
  block: false,
  snapshots: false,
  clones: false,
  expansion: 'none',
  fsTypes: [],
  attachable: false,
  fencing: false,
  scope: 'local',
};

/** Capabilities of a loop-like fake: attachable, sized, block, snapshots, clones, online growth. */
export const LOOP_LIKE: Partial<BackendCapabilities> = {
  sizeEnforced: true, block: true, snapshots: true, clones: true, expansion: 'online', fsTypes: ['ext4', 'xfs'], attachable: true,
};

/**
 * @example const b = createFakeBackend({ name: 'fake', capabilities: LOOP_LIKE, root: tmp });
 */
export function createFakeBackend(opts: FakeBackendOptions = {}): FakeBackend {
  const caps: BackendCapabilities = { ...DEFAULT_CAPABILITIES, ...opts.capabilities };
  // What core/backend.ts's Backend type says of real drivers, checked at run time here.
  if (caps.block && !caps.attachable) throw new Error('fake: block volumes need attachable (a device)');
  if (caps.fencing) throw new Error('fake: the fake backend cannot fence');
  const state = opts.state ?? createFakeState();
  const calls: FakeCall[] = [];
  const faults = new Map<FakeMethod, Error[]>();
  const holds = new Map<FakeMethod, Array<{ arrive: () => void; gate: Promise<void> }>>();
  const knownOptions = opts.knownOptions ?? ['tier'];
  const defaultSize = opts.defaultSizeBytes ?? (caps.sizeEnforced ? 64 * 2 ** 20 : 0);
  const root = opts.root;
  if (root) mkdirSync(root, { recursive: true, mode: 0o700 });

  const enter = async (method: FakeMethod, id: string | null): Promise<void> => {
    calls.push({ method, id });
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const hold = holds.get(method)?.shift();
    if (hold) {
      hold.arrive();
      await hold.gate;
    }
    const queue = faults.get(method);
    const err = queue?.shift();
    if (err) throw err;
  };
  const checkNode = (node: string, op: 'attach' | 'mount') => {
    if (opts.node !== undefined && caps.scope === 'local') requireOwnNode({ backend: opts.name ?? 'fake', own: opts.node, node, op });
  };
  const must = (id: string): FakeVolumeState => {
    const v = state.volumes.get(id);
    if (!v) throw notFound(`fake: volume ${id} does not exist`);
    return v;
  };
  const dataDir = (id: string) => (root ? join(root, 'volumes', id) : `/fake/volumes/${id}`);
  const deviceFile = (n: number) => (root ? join(root, 'dev', `fake${n}`) : `/dev/fake${n}`);
  const materialize = (id: string, vol: BackendVolume) => {
    if (!root) return;
    mkdirSync(dataDir(id), { recursive: true });
    if (vol.volumeMode === 'block') writeFileSync(join(root, 'volumes', `${id}.img`), '');
  };

  const base: BackendBase & FakeControls = {
    name: opts.name ?? 'fake',
    driver: 'fake',
    capabilities: caps,
    calls,
    state,

    failNext(method, err) {
      const list = faults.get(method) ?? [];
      list.push(err ?? new BerthError('Internal', `fake: injected ${method} fault`));
      faults.set(method, list);
    },
    holdNext(method) {
      let arrive!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((r) => (arrive = r));
      const gate = new Promise<void>((r) => (release = r));
      const list = holds.get(method) ?? [];
      list.push({ arrive, gate });
      holds.set(method, list);
      return { reached, release };
    },
    callsTo: (method) => calls.filter((c) => c.method === method).map((c) => c.id),
    resetCalls() {
      calls.length = 0;
    },

    describe: () => ({ root: root ?? null, fake: true, sizeEnforced: caps.sizeEnforced }),
    privateDirs: () => (root ? [root] : []),

    validateCreate(spec: CreateSpec): CreateSpec {
      if (spec.volumeMode === 'block' && !caps.block) throw invalidArgument('mode', 'this fake backend has no block volumes');
      let fsType: FsType | null = spec.fsType;
      if (spec.volumeMode === 'block') {
        if (fsType !== null) throw invalidArgument('fs', 'block volumes have no filesystem');
      } else if (caps.fsTypes.length === 0) {
        if (fsType !== null) throw invalidArgument('fs', 'this fake backend makes no filesystem');
      } else {
        fsType ??= caps.fsTypes[0]!;
        if (!caps.fsTypes.includes(fsType)) throw invalidArgument('fs', `"${fsType}" is not offered (${caps.fsTypes.join(', ')})`);
      }
      for (const key of Object.keys(spec.options)) {
        if (!knownOptions.includes(key)) throw invalidArgument(`opts.${key}`, `unknown option (known: ${knownOptions.join(', ') || 'none'})`);
      }
      const sizeBytes = spec.sizeBytes || defaultSize;
      if (opts.minSizeBytes && sizeBytes < opts.minSizeBytes) throw outOfRange('size', `must be at least ${opts.minSizeBytes} bytes`);
      return { ...spec, sizeBytes, fsType };
    },

    async create(vol) {
      await enter('create', vol.id);
      if (!state.volumes.has(vol.id)) state.volumes.set(vol.id, { sizeBytes: vol.sizeBytes, device: null, mounted: false, filledFrom: null });
      materialize(vol.id, vol);
    },

    async delete(vol) {
      await enter('delete', vol.id);
      const v = state.volumes.get(vol.id);
      if (!v) return;
      // Like the real backends, delete tears down a mounted / attached volume first.
      if (root && v.device) rmSync(v.device, { force: true });
      state.volumes.delete(vol.id);
      if (root) {
        rmSync(dataDir(vol.id), { recursive: true, force: true });
        rmSync(join(root, 'volumes', `${vol.id}.img`), { force: true });
      }
    },

    async mount(vol, o): Promise<MountResult> {
      await enter('mount', vol.id);
      checkNode(o.node, 'mount');
      const v = must(vol.id);
      if (caps.attachable) {
        if (!v.device) throw failedPrecondition(`fake: volume ${vol.id} must be attached before mount`);
        if (o.device !== v.device) throw failedPrecondition(`fake: mount got device ${o.device}, attached is ${v.device}`);
      }
      v.mounted = true;
      if (vol.volumeMode === 'block') return { path: v.device ?? join(dataDir(vol.id), 'device') };
      return { path: dataDir(vol.id) };
    },

    async unmount(vol) {
      await enter('unmount', vol.id);
      const v = state.volumes.get(vol.id);
      if (v) v.mounted = false;
    },

    async inspect(vol): Promise<BackendRuntimeState> {
      await enter('inspect', vol.id);
      const v = state.volumes.get(vol.id);
      return v ? { exists: true, device: v.device, mounted: v.mounted } : { exists: false, device: null, mounted: false };
    },

    async listPresent() {
      await enter('listPresent', null);
      return [...state.volumes.keys()].sort();
    },

    async capacity() {
      await enter('capacity', null);
      let used = 0;
      for (const v of state.volumes.values()) used += v.sizeBytes;
      const total = 2 ** 40;
      return { totalBytes: total, availableBytes: Math.max(0, total - used) };
    },

    async stats(vol): Promise<VolumeStats> {
      await enter('stats', vol.id);
      const v = must(vol.id);
      const total = v.sizeBytes || 2 ** 40;
      const used = root ? treeBytes(dataDir(vol.id)) : 0;
      return {
        totalBytes: total, usedBytes: used, availableBytes: Math.max(0, total - used), totalInodes: null, usedInodes: null,
        availableInodes: null, abnormal: false, message: 'fake',
      };
    },
  };

  // The optional abilities, each present exactly when its capability is declared.
  const attaching: Omit<Attaching, 'capabilities'> = {
    async attach(vol, o): Promise<AttachResult> {
      await enter('attach', vol.id);
      checkNode(o.node, 'attach');
      const v = must(vol.id);
      if (!v.device) {
        const n = state.nextDevice++;
        v.device = deviceFile(n);
        if (root) {
          mkdirSync(join(root, 'dev'), { recursive: true });
          writeFileSync(v.device, '');
        }
      }
      return { device: v.device };
    },

    async detach(vol) {
      await enter('detach', vol.id);
      const v = state.volumes.get(vol.id);
      if (!v || !v.device) return;
      if (v.mounted) throw failedPrecondition(`fake: volume ${vol.id} is mounted; unmount before detach`);
      if (root) rmSync(v.device, { force: true });
      v.device = null;
    },

    async attachedHere(vol) {
      return state.volumes.get(vol.id)?.device != null;
    },
  };

  const snapshotting: Omit<Snapshotting, 'capabilities'> = {
    async createSnapshot(vol, snap, onProgress) {
      await enter('createSnapshot', snap.id);
      must(vol.id);
      onProgress?.(vol.sizeBytes, vol.sizeBytes);
      state.snapshots.set(snap.id, snap);
    },
    async deleteSnapshot(snap) {
      await enter('deleteSnapshot', snap.id);
      state.snapshots.delete(snap.id);
    },
    async createFromSnapshot(vol, snap, onProgress) {
      await enter('createFromSnapshot', vol.id);
      onProgress?.(snap.sizeBytes, snap.sizeBytes);
      if (!state.snapshots.has(snap.id)) throw notFound(`fake: snapshot ${snap.id} does not exist`);
      if (!state.volumes.has(vol.id)) state.volumes.set(vol.id, { sizeBytes: vol.sizeBytes, device: null, mounted: false, filledFrom: snap.id });
      materialize(vol.id, vol);
    },
  };
  const cloning: Omit<Cloning, 'capabilities'> = {
    async createFromVolume(vol, source, onProgress) {
      await enter('createFromVolume', vol.id);
      onProgress?.(source.sizeBytes, source.sizeBytes);
      must(source.id);
      if (!state.volumes.has(vol.id)) state.volumes.set(vol.id, { sizeBytes: vol.sizeBytes, device: null, mounted: false, filledFrom: source.id });
      materialize(vol.id, vol);
    },
  };
  const expanding: Omit<Expanding, 'capabilities'> = {
    async expand(vol, newSizeBytes, st) {
      await enter('expand', vol.id);
      must(vol.id).sizeBytes = newSizeBytes;
      // Lets tests play the loop driver's ext4 case: grown image, filesystem at next mount.
      if (opts.expandOutcome) return opts.expandOutcome(st);
    },
  };
  // The capabilities are chosen at run time, so the compiler cannot pair them with the
  // methods here; fake.test.ts checks the pairing instead (as the conformance case does).
  const discarding: Pick<BackendBase, 'discardIfEmpty'> = {
    async discardIfEmpty(vol) {
      await enter('discardIfEmpty', vol.id);
      const v = state.volumes.get(vol.id);
      if (!v || v.data || v.filledFrom !== null || v.mounted || v.device !== null) return false;
      state.volumes.delete(vol.id);
      return true;
    },
  };
  return Object.assign(
    base,
    opts.discardsEmpty ? discarding : {},
    caps.attachable ? attaching : {},
    caps.snapshots ? snapshotting : {},
    caps.clones ? cloning : {},
    caps.expansion !== 'none' ? expanding : {},
  ) as unknown as FakeBackend;
}

/**
 * Driver factory for config-driven tests (`driver: fake`). Settings: root (default
 * <stateRoot>/backends/<name>), capabilities (partial record), knownOptions.
 */
export const fakeDriver: BackendDriver = { binaries: [], create: (ctx) => createFakeBackend(fakeOptions(ctx)) };

function fakeOptions(ctx: BackendContext): FakeBackendOptions {
  const s = ctx.settings;
  for (const key of Object.keys(s)) {
    if (!['driver', 'root', 'capabilities', 'knownOptions'].includes(key)) {
      throw invalidArgument(`backends.${ctx.name}.${key}`, 'unknown setting for the fake driver (known: root, capabilities, knownOptions)');
    }
  }
  return {
    name: ctx.name,
    node: ctx.node,
    root: typeof s.root === 'string' ? s.root : join(ctx.stateRoot, 'backends', ctx.name),
    capabilities: (s.capabilities ?? {}) as Partial<BackendCapabilities>,
    ...(Array.isArray(s.knownOptions) ? { knownOptions: s.knownOptions as string[] } : {}),
  };
}

/** Bytes of the regular files under `dir` (the fake's notion of "used"). */
function treeBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += treeBytes(p);
    else if (e.isFile()) total += lstatSync(p).size;
  }
  return total;
}
