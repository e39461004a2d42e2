// The core alone (VolumeService on a real SQLite file, fake backend that does no I/O): what
// the service itself costs per operation, and how list / inspect / find behave with 10,000
// volumes in the store (read from the store's in-memory copy; label filters use the index). Frontend and OS costs are measured by the other bench files.
import { createFakeHarness } from '../fake/harness.js';
import { sample, summarize, type BenchResult } from './stats.js';

const ctx = { frontend: 'admin' as const };
const GROUP = 'core service (fake backend, SQLite synchronous=FULL)';

export async function run(): Promise<BenchResult[]> {
  const h = await createFakeHarness();
  const out: BenchResult[] = [];
  try {
    out.push(summarize(GROUP, 'create', await sample(200, (i) => h.svc.create({ name: `c${i + 10}` }, ctx)), { note: 'two fsynced commits (creating, ready)' }));
    const runtime = 'runtime commits (no fsync: kernel state a power cut wipes anyway)';
    out.push(summarize(GROUP, 'mount (first reference)', await sample(200, (i) => h.svc.mount({ ref: `c${Math.max(i, 0) + 10}`, consumer: `docker:${i}` }, ctx)), { note: runtime }));
    out.push(summarize(GROUP, 'unmount (last reference)', await sample(200, (i) => h.svc.unmount({ ref: `c${Math.max(i, 0) + 10}`, consumer: `docker:${i}` }, ctx)), { note: runtime }));
    out.push(summarize(GROUP, 'remove', await sample(198, (i) => h.svc.remove({ ref: `c${i + 12}` }, ctx), 0), { note: 'one fsynced commit (deleting intent)' }));

    // 10,000 volumes, inserted directly (the service path is measured above).
    const now = new Date().toISOString();
    h.store.tx(() => {
      for (let i = 0; i < 10_000; i++) {
        h.store.insertVolume({
          id: `vol-${String(i).padStart(26, '0')}`, name: `bulk-${i}`, backend: 'local', sizeBytes: 0, fsType: null, volumeMode: 'filesystem',
          accessMode: 'ReadWriteOnce', labels: { shard: String(i % 100) }, options: {}, sourceKind: null, sourceId: null, status: 'ready',
          createdAt: now, node: null,
        });
      }
    });
    for (let i = 0; i < 10_000; i++) {
      h.backend.state.volumes.set(`vol-${String(i).padStart(26, '0')}`, { sizeBytes: 0, device: null, mounted: false, filledFrom: null });
    }
    const note = '10,000 volumes in the store';
    out.push(summarize(GROUP, 'inspect by name', await sample(2000, (i) => h.svc.inspect(`bulk-${Math.abs(i * 7919) % 10_000}`, ctx)), { note }));
    out.push(summarize(GROUP, 'find by id (sync)', await sample(2000, async (i) => h.svc.find(`vol-${String(Math.abs(i * 7919) % 10_000).padStart(26, '0')}`)), { note }));
    out.push(summarize(GROUP, 'list (all)', await sample(20, () => h.svc.list({}, ctx)), { note }));
    out.push(summarize(GROUP, 'list (label filter)', await sample(20, () => h.svc.list({ labels: { shard: '7' } }, ctx)), { note: `${note}, 100 match` }));
    const t0 = performance.now();
    await h.svc.reconcile();
    out.push({ group: GROUP, name: 'reconcile pass', n: 1, p50Ms: performance.now() - t0, note });
  } finally {
    await h.cleanup();
  }
  return out;
}
