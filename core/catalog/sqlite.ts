/**
 * The embedded catalog: the cluster facts in the node's own SQLite file, next to the node
 * facts, for single-node berth (the default). A commit and the node-local writes of the same
 * step are one SQLite transaction, as before the catalog existed; reads are the store's
 * in-memory volume table. The lock is an in-process FIFO per key (the only writer is this
 * process), so it costs a Map lookup and cannot be lost; fresh() has nothing to catch up with.
 */
import { alreadyExists, internal } from '../errors.js';
import { KeyedMutex } from '../locks.js';
import type { Store } from '../store/store.js';
import type {
  AttachmentRecord, Catalog, CatalogChange, CatalogLock, CatalogWriter, CommitOptions, FenceRecord, LockOptions, NodeLiveness, PreemptRecord,
  SnapshotRecord, VolumeFilter, VolumeRecord,
} from './catalog.js';
import { unsupported } from '../errors.js';

/** One node: nothing to fence, preempt or wait for. */
const SINGLE_NODE = 'single-node berth (embedded catalog) has no other node: fencing and preemption need cluster mode';

export class SqliteCatalog implements Catalog {
  readonly mode = 'embedded' as const;
  readonly #store: Store;
  readonly #locks = new KeyedMutex(0);

  constructor(store: Store) {
    this.#store = store;
  }

  getVolume(id: string): VolumeRecord | null {
    return this.#store.getVolume(id);
  }
  getVolumeByName(name: string): VolumeRecord | null {
    return this.#store.getVolumeByName(name);
  }
  listVolumes(filter?: VolumeFilter): VolumeRecord[] {
    return this.#store.listVolumes(filter);
  }
  countVolumes(): number {
    return this.#store.countVolumes();
  }
  listAttachments(volumeId?: string): AttachmentRecord[] {
    const rows = this.#store.listAttachments(volumeId);
    return volumeId === undefined ? rows : rows.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }
  getSnapshot(id: string): SnapshotRecord | null {
    return this.#store.getSnapshot(id);
  }
  getSnapshotByName(name: string): SnapshotRecord | null {
    return this.#store.getSnapshotByName(name);
  }
  listSnapshots(filter?: { volumeId?: string }): SnapshotRecord[] {
    return this.#store.listSnapshots(filter);
  }

  getFence(_node: string): FenceRecord | null {
    return null;
  }
  listFences(): FenceRecord[] {
    return [];
  }
  getPreempt(_volumeId: string): PreemptRecord | null {
    return null;
  }
  nodeLiveness(_node: string): NodeLiveness | null {
    return null;
  }
  onChange(_cb: (change: CatalogChange) => void): () => void {
    return () => undefined;
  }

  fresh(): Promise<void> {
    return Promise.resolve();
  }

  async lock(key: string, opts: LockOptions): Promise<CatalogLock> {
    const release = await this.#locks.acquire(key, { wait: opts.waitMs > 0, waitMs: opts.waitMs });
    let released = false;
    return {
      key,
      release: () => {
        if (!released) {
          released = true;
          release();
        }
        return Promise.resolve();
      },
    };
  }

  commit(fn: (w: CatalogWriter) => void, opts: CommitOptions = {}): Promise<void> {
    const s = this.#store;
    const w: CatalogWriter = {
      createVolume: (r) => {
        if (s.getVolumeByName(r.name)) throw alreadyExists(`volume "${r.name}" already exists`);
        if (s.getVolume(r.id)) throw internal(`catalog: volume id ${r.id} is taken`);
        s.insertVolume(r);
      },
      patchVolume: (id, patch) => {
        if (!s.getVolume(id)) throw internal(`catalog: no volume ${id} to change`);
        s.updateVolume(id, patch);
      },
      deleteVolume: (id) => s.deleteVolume(id),
      putAttachment: (a) => s.putAttachment(a),
      deleteAttachment: (volumeId, node) => s.deleteAttachment(volumeId, node),
      createSnapshot: (r) => {
        if (s.getSnapshotByName(r.name)) throw alreadyExists(`snapshot "${r.name}" already exists`);
        s.insertSnapshot(r);
      },
      setSnapshotStatus: (id, status) => s.setSnapshotStatus(id, status),
      deleteSnapshot: (id) => s.deleteSnapshot(id),
      putFence: () => {
        throw unsupported(SINGLE_NODE);
      },
      deleteFence: () => undefined,
      putPreempt: () => {
        throw unsupported(SINGLE_NODE);
      },
      deletePreempt: () => undefined,
      expectNodeDown: () => undefined,
      expectFence: () => undefined,
    };
    try {
      s.tx(() => {
        fn(w);
        opts.local?.();
      }, { durable: opts.durable !== false });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
