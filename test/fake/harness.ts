/**
 * A volume service on a real SQLite file and fake backends, for unit tests of the core
 * and of frontends. `restart()` simulates a daemon restart after a crash: it opens a new
 * store on the same file and a new service whose fake backends share the old "kernel" state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../core/backend.js';
import { openStore } from '../../core/store/sqlite.js';
import { createVolumeService, type CoreVolumeService } from '../../core/volume-service.js';
import type { Store } from '../../core/store/store.js';
import { createExec, type Exec } from '../../core/os/exec.js';
import { createSilentLogger, type Logger } from '../../core/log.js';
import type { OpObserver } from '../../core/observe.js';
import { createFakeBackend, createFakeState, type FakeBackend, type FakeBackendOptions, type FakeState } from './fake.js';

export interface FakeHarnessOptions {
  /** Backend instances by name (default: { local: {} }); the first is the default backend. */
  readonly backends?: Record<string, Omit<FakeBackendOptions, 'name' | 'state' | 'root'>>;
  readonly nodeId?: string;
  readonly lockWaitMs?: number;
  /** Periodic reconcile interval (default 0: only at start-up). */
  readonly reconcileIntervalMs?: number;
  readonly observer?: OpObserver;
  readonly log?: Logger;
  readonly exec?: Exec;
  /** Existing temporary root (default: a new mkdtemp dir, removed by cleanup()). */
  readonly root?: string;
  /**
   * targets.allowedPrefixes (default: [root]). The state root the core is told about is the
   * given root, or <root>/state for a generated one, so that targets elsewhere under it are allowed.
   */
  readonly targetPrefixes?: readonly string[];
}

export interface FakeHarness {
  readonly root: string;
  readonly dbPath: string;
  svc: CoreVolumeService;
  store: Store;
  backends: Map<string, FakeBackend>;
  /** The default ("local" unless configured) backend. */
  backend: FakeBackend;
  /** Opens a fresh store + service on the same file and kernel state (a restart after kill -9). */
  restart(opts?: { closeOld?: boolean }): Promise<void>;
  cleanup(): Promise<void>;
}

/** @example const h = await createFakeHarness(); await h.svc.create({ name: 'a' }, { frontend: 'admin' }); */
export async function createFakeHarness(opts: FakeHarnessOptions = {}): Promise<FakeHarness> {
  const root = opts.root ?? mkdtempSync(join(tmpdir(), 'berth-core-'));
  const dbPath = join(root, 'state.db');
  const specs = opts.backends ?? { local: {} };
  const names = Object.keys(specs);
  const states = new Map<string, FakeState>(names.map((n) => [n, createFakeState()]));
  const exec = opts.exec ?? createExec();
  const log = opts.log ?? createSilentLogger();

  const build = async () => {
    const backends = new Map<string, FakeBackend>();
    for (const n of names) {
      backends.set(n, createFakeBackend({ ...specs[n], name: n, state: states.get(n)!, root: join(root, 'backends', n) }));
    }
    const store = openStore(dbPath);
    const svc = await createVolumeService({
      config: { nodeId: opts.nodeId ?? 'node-1', stateRoot: opts.root ?? join(root, 'state'), defaultBackend: names[0]!, lockWaitMs: opts.lockWaitMs ?? 10_000,
        reconcileIntervalMs: opts.reconcileIntervalMs ?? 0, targets: { allowedPrefixes: opts.targetPrefixes ?? [root] } },
      store,
      backends: backends as Map<string, Backend>,
      exec,
      log,
      version: 'test',
      ...(opts.observer ? { observer: opts.observer } : {}),
    });
    return { backends, store, svc };
  };

  const first = await build();
  const h: FakeHarness = {
    root,
    dbPath,
    svc: first.svc,
    store: first.store,
    backends: first.backends,
    backend: first.backends.get(names[0]!)!,
    async restart({ closeOld = true } = {}) {
      if (closeOld) await h.svc.close();
      const next = await build();
      h.svc = next.svc;
      h.store = next.store;
      h.backends = next.backends;
      h.backend = next.backends.get(names[0]!)!;
    },
    async cleanup() {
      await h.svc.close().catch(() => undefined);
      if (!opts.root) rmSync(root, { recursive: true, force: true });
    },
  };
  return h;
}
