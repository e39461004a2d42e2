/**
 * The core's behavioural suites run over both catalogs (issue 10: "one store conformance
 * suite ... the same idempotency, the same concurrency results and the same crash recovery").
 * A test file asks for the catalogs once, at its top level; the etcd (Debian's etcd-server,
 * test/helpers/etcd.ts) starts on first use, on free loopback ports, and is stopped and
 * removed after the file, failed or not. Every harness gets a key prefix of its own in it.
 *
 *   const catalogs = useCatalogs();
 *   describe.each(CATALOGS)('volume service (%s catalog)', (kind) => {
 *     beforeEach(async () => { h = await catalogs.harness(kind, { backends: { local: {} } }); });
 *     afterEach(() => h.cleanup());
 *   });
 */
import { afterAll } from 'vitest';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { createTmpRoot, type TmpRoot } from '../helpers/tmp-root.js';
import { createFakeHarness, type FakeHarness, type FakeHarnessOptions } from './harness.js';

/**
 * After an etcd outage (etcd.stop(), etcd.start()): waits until the harness's catalog answers
 * again, caught up (the client reconnects on its own, the watch resumes); at most 30 s.
 * @example await etcd.start(); await untilReachable(h);
 */
export async function untilReachable(h: FakeHarness): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await h.catalog.fresh();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The two homes of the catalog: SQLite in the state root (embedded), and etcd (cluster mode). */
export const CATALOGS = ['embedded', 'etcd'] as const;
export type CatalogKind = (typeof CATALOGS)[number];

export interface TestCatalogs {
  /** A fake-backend harness whose service runs over `kind`. */
  harness(kind: CatalogKind, opts?: Omit<FakeHarnessOptions, 'catalog'>): Promise<FakeHarness>;
  /** The file's etcd (started on first use). */
  etcd(): Promise<TestEtcd>;
}

/**
 * Call at the top level of a test file (it registers the file's afterAll).
 * @example const catalogs = useCatalogs(); const h = await catalogs.harness('etcd');
 */
export function useCatalogs(): TestCatalogs {
  let root: TmpRoot | null = null;
  let started: Promise<TestEtcd> | null = null;
  afterAll(async () => {
    await root?.cleanup();
  });
  const etcd = () => {
    started ??= (async () => {
      root = createTmpRoot('unit-etcd');
      return startEtcd(root);
    })();
    return started;
  };
  return {
    etcd,
    async harness(kind, opts = {}) {
      if (kind === 'embedded') return createFakeHarness(opts);
      return createFakeHarness({ ...opts, catalog: { etcd: (await etcd()).endpoint } });
    },
  };
}
