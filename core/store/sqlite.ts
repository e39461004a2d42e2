/**
 * The SQLite Store (better-sqlite3; the only module that imports it).
 *
 * Durability choices:
 * - journal_mode=WAL: readers never block the writer, and a killed process (kill -9) loses
 *   nothing that was committed.
 * - synchronous=FULL by default: every commit is fsynced before it returns. The service
 *   writes an intent row ('creating', 'deleting') *before* touching the OS, so that intent
 *   must be on disk before a persistent side effect happens (mkdir, an image file, rm -r),
 *   including across a power loss. (One exception, create-ops.ts intentDurability: a plain
 *   create on a backend whose leftover reconcile can recognise and remove, an empty directory.)
 * - tx(fn, { durable: false }) commits with synchronous=NORMAL instead (no fsync; ~0.05 ms
 *   instead of 0.5-2 ms of a blocked event loop). In WAL mode such a commit survives a
 *   process crash; a power cut can lose it, but only together with every later commit:
 *   WAL frames carry cumulative checksums, so recovery keeps a prefix of the commit
 *   sequence, and the next durable commit's fsync covers the earlier frames. The core uses
 *   it only for records of kernel state that a power cut wipes anyway (mount references,
 *   mounted paths, implicit loop attachments): after a reboot no mount or loop device is
 *   left to leak, and kubelet / Docker ask for their mounts again.
 * - foreign_keys=ON so deleting a volume removes its attachments and mount references.
 * - locking_mode=EXCLUSIVE (unless `shared`), set before the first WAL access: the
 *   connection takes an exclusive lock on the file when it opens the WAL and holds it
 *   until close, and keeps the WAL index in its own memory instead of a -shm file. So
 *   (1) the lock is the daemon's claim on its state root: a second daemon gets "locked",
 *   and the kernel drops the lock when a daemon dies (kill -9 included); (2) opening
 *   needs no free space (a -shm file has to be created and sized), so a daemon starts
 *   and serves reads on a full disk. No other process reads the file while a daemon runs.
 * - Files are private: the database is created 0600 and SQLite gives its -wal the same mode.
 * - A write that fails with SQLITE_FULL releases the space reserve (space-reserve.ts) and
 *   is retried once; failing again it is ResourceExhausted naming the database.
 */
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { BerthError, failedPrecondition, internal } from '../errors.js';
import type { Logger } from '../log.js';
import { MIGRATIONS } from './migrations.js';
import { createSpaceReserve, RESERVE_BYTES, type SpaceReserve } from './space-reserve.js';
import { VolumeCache } from './volume-cache.js';
import type {
  AttachmentRow, MountRefBinding, MountRefRow, MountRefState, SnapshotRow, SnapshotStatus, Store, TxOptions, VolumePatch, VolumeRow,
} from './store.js';
import type { VolumeStatus } from '../types.js';

interface AttachmentDb {
  volume_id: string; node: string; device: string | null; read_only: number; implicit: number; path: string | null; created_at: string;
}
interface MountRefDb {
  volume_id: string; consumer: string; frontend: string; target: string | null; read_only: number; state: string; created_at: string;
  target_created: number; bind_source: string | null; bind_mount_id: number | null; bind_dev: string | null; bind_root: string | null;
}
interface SnapshotDb {
  id: string; name: string; volume_id: string; backend: string; size_bytes: number; fs_type: string | null; volume_mode: string;
  status: string; created_at: string;
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze({});
/** Most volumes have no labels / options: skip JSON.parse for those (list of 10,000 volumes). */
const parseMap = (json: string): Readonly<Record<string, string>> => (json === '{}' ? EMPTY : (JSON.parse(json) as Record<string, string>));

/**
 * Volume rows are read in raw mode (arrays, in this column order) and built into VolumeRow
 * directly: better-sqlite3's per-row objects would be a second allocation per row, which
 * is most of the cost of listing 10,000 volumes.
 */
const VOLUME_COLUMNS = 'id, name, backend, size_bytes, fs_type, volume_mode, access_mode, labels, options, source_kind, source_id, status, created_at, node';
type VolumeRaw = [string, string, string, number, string | null, string, string, string, string, string | null, string | null, string, string, string | null];

const toVolume = (r: VolumeRaw): VolumeRow => ({
  id: r[0],
  name: r[1],
  backend: r[2],
  sizeBytes: r[3],
  fsType: r[4] as VolumeRow['fsType'],
  volumeMode: r[5] as VolumeRow['volumeMode'],
  accessMode: r[6] as VolumeRow['accessMode'],
  labels: parseMap(r[7]),
  options: parseMap(r[8]),
  sourceKind: r[9] as VolumeRow['sourceKind'],
  sourceId: r[10],
  status: r[11] as VolumeStatus,
  createdAt: r[12],
  node: r[13],
});
const toAttachment = (r: AttachmentDb): AttachmentRow => ({
  volumeId: r.volume_id, node: r.node, device: r.device, path: r.path, readOnly: r.read_only === 1, implicit: r.implicit === 1,
  createdAt: r.created_at,
});
const toMountRef = (r: MountRefDb): MountRefRow => ({
  volumeId: r.volume_id,
  consumer: r.consumer,
  frontend: r.frontend as MountRefRow['frontend'],
  target: r.target,
  readOnly: r.read_only === 1,
  state: r.state as MountRefState,
  createdAt: r.created_at,
  targetCreated: r.target_created === 1,
  bindSource: r.bind_source,
  bindMount: r.bind_mount_id === null || r.bind_dev === null || r.bind_root === null
    ? null
    : { id: r.bind_mount_id, majorMinor: r.bind_dev, root: r.bind_root },
});
const bindingParams = (b: Partial<MountRefBinding>) => ({
  target_created: b.targetCreated ? 1 : 0,
  bind_source: b.bindSource ?? null,
  bind_mount_id: b.bindMount?.id ?? null,
  bind_dev: b.bindMount?.majorMinor ?? null,
  bind_root: b.bindMount?.root ?? null,
});
const toSnapshot = (r: SnapshotDb): SnapshotRow => ({
  id: r.id, name: r.name, volumeId: r.volume_id, backend: r.backend, sizeBytes: r.size_bytes,
  fsType: r.fs_type as SnapshotRow['fsType'], volumeMode: r.volume_mode as SnapshotRow['volumeMode'],
  status: r.status as SnapshotStatus, createdAt: r.created_at,
});

/** ResourceExhausted for a write the filesystem had no room for, naming the database. */
function storeFull(path: string, cause: unknown): BerthError {
  return new BerthError('ResourceExhausted', `the state database ${path} cannot be written: the filesystem holding it is full (SQLITE_FULL); free space there`, { cause });
}

/** Applies every migration newer than the file's user_version, one transaction each. */
function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
  if (current > latest) {
    throw internal(`state database schema version ${current} is newer than this berth (${latest}); refusing to open it`);
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}

export interface OpenStoreOptions {
  /**
   * Let other connections use the file at the same time (tests that look at it from a
   * second connection). Default false: the daemon holds it exclusively (see above).
   */
  readonly shared?: boolean;
  /** How long to wait for a lock another connection holds (ms; default 5000). */
  readonly lockWaitMs?: number;
  /** Size of the space reserve <path>.reserve (default 1 MiB; 0 = none). */
  readonly reserveBytes?: number;
  readonly log?: Logger;
}

/** The files SQLite keeps for the database at `path` (-shm only exists in shared mode). */
export const storeFiles = (path: string): string[] => [path, `${path}-wal`, `${path}-shm`];

const sqliteCode = (err: unknown): string | undefined => (err as { code?: unknown } | null)?.code as string | undefined;

/**
 * Opens (creating if needed) the state database and applies migrations. FailedPrecondition
 * when another process holds it; ResourceExhausted when it cannot be written for lack of space.
 * @example const store = openStore('/var/lib/berth/state.db');
 */
export function openStore(path: string, opts: OpenStoreOptions = {}): Store {
  const memory = path === ':memory:';
  if (!memory) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Created 0600 before SQLite sees it (it would make it 0644): its -wal copies the mode.
    closeSync(openSync(path, 'a', 0o600));
  }
  const db = new Database(path, { timeout: opts.lockWaitMs ?? 5000 });
  try {
    if (!opts.shared) db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db);
  } catch (err) {
    db.close();
    if (sqliteCode(err) === 'SQLITE_BUSY') throw failedPrecondition(`the state database ${path} is locked by another process`);
    if (sqliteCode(err) === 'SQLITE_FULL') throw storeFull(path, err);
    throw err;
  }
  const reserve: SpaceReserve | null = memory ? null : createSpaceReserve(`${path}.reserve`, {
    bytes: opts.reserveBytes ?? RESERVE_BYTES, ...(opts.log ? { log: opts.log } : {}),
  });

  const s = {
    insertLabel: db.prepare<[string, string, string]>('INSERT INTO volume_labels (volume_id, key, value) VALUES (?, ?, ?)'),
    insertVolume: db.prepare(
      `INSERT INTO volumes (id, name, backend, size_bytes, fs_type, volume_mode, access_mode, labels, options,
         source_kind, source_id, status, created_at, node)
       VALUES (@id, @name, @backend, @size_bytes, @fs_type, @volume_mode, @access_mode, @labels, @options,
         @source_kind, @source_id, @status, @created_at, @node)`,
    ),
    setVolumeStatus: db.prepare<[string, string]>('UPDATE volumes SET status = ? WHERE id = ?'),
    setVolumeSize: db.prepare<[number, string]>('UPDATE volumes SET size_bytes = ? WHERE id = ?'),
    deleteVolume: db.prepare<[string]>('DELETE FROM volumes WHERE id = ?'),

    listAttachments: db.prepare<[], AttachmentDb>('SELECT * FROM attachments ORDER BY rowid'),
    listAttachmentsOf: db.prepare<[string], AttachmentDb>('SELECT * FROM attachments WHERE volume_id = ? ORDER BY rowid'),
    putAttachment: db.prepare(
      `INSERT INTO attachments (volume_id, node, device, read_only, implicit, path, created_at)
       VALUES (@volume_id, @node, @device, @read_only, @implicit, @path, @created_at)
       ON CONFLICT (volume_id, node) DO UPDATE SET device = excluded.device, read_only = excluded.read_only,
         implicit = excluded.implicit, path = excluded.path`,
    ),
    deleteAttachment: db.prepare<[string, string]>('DELETE FROM attachments WHERE volume_id = ? AND node = ?'),

    listMountRefs: db.prepare<[], MountRefDb>('SELECT * FROM mount_refs ORDER BY rowid'),
    listMountRefsOf: db.prepare<[string], MountRefDb>('SELECT * FROM mount_refs WHERE volume_id = ? ORDER BY rowid'),
    // The target itself, anything below it ("t/" <= x < "t0": '0' follows '/'), and its ancestors.
    listMountRefsNear: db.prepare<{ t: string; below: string; end: string; ancestors: string }, MountRefDb>(
      `SELECT * FROM mount_refs WHERE target = @t OR (target >= @below AND target < @end)
         OR target IN (SELECT value FROM json_each(@ancestors)) ORDER BY rowid`,
    ),
    insertMountRef: db.prepare(
      `INSERT INTO mount_refs (volume_id, consumer, frontend, target, read_only, state, created_at,
         target_created, bind_source, bind_mount_id, bind_dev, bind_root)
       VALUES (@volume_id, @consumer, @frontend, @target, @read_only, @state, @created_at,
         @target_created, @bind_source, @bind_mount_id, @bind_dev, @bind_root)`,
    ),
    setMountRefState: db.prepare<[string, string, string]>('UPDATE mount_refs SET state = ? WHERE volume_id = ? AND consumer = ?'),
    setMountRefBinding: db.prepare(
      `UPDATE mount_refs SET target_created = @target_created, bind_source = @bind_source, bind_mount_id = @bind_mount_id,
         bind_dev = @bind_dev, bind_root = @bind_root WHERE volume_id = @volume_id AND consumer = @consumer`,
    ),
    deleteMountRef: db.prepare<[string, string]>('DELETE FROM mount_refs WHERE volume_id = ? AND consumer = ?'),
    deleteMountRefs: db.prepare<[string]>('DELETE FROM mount_refs WHERE volume_id = ?'),

    getSnapshot: db.prepare<[string], SnapshotDb>('SELECT * FROM snapshots WHERE id = ?'),
    getSnapshotByName: db.prepare<[string], SnapshotDb>('SELECT * FROM snapshots WHERE name = ?'),
    listSnapshots: db.prepare<[], SnapshotDb>('SELECT * FROM snapshots ORDER BY created_at, name'),
    listSnapshotsOf: db.prepare<[string], SnapshotDb>('SELECT * FROM snapshots WHERE volume_id = ? ORDER BY created_at, name'),
    insertSnapshot: db.prepare(
      `INSERT INTO snapshots (id, name, volume_id, backend, size_bytes, fs_type, volume_mode, status, created_at)
       VALUES (@id, @name, @volume_id, @backend, @size_bytes, @fs_type, @volume_mode, @status, @created_at)`,
    ),
    setSnapshotStatus: db.prepare<[string, string]>('UPDATE snapshots SET status = ? WHERE id = ?'),
    deleteSnapshot: db.prepare<[string]>('DELETE FROM snapshots WHERE id = ?'),
  };

  /**
   * One prepared statement per filter shape. The first label drives the query through the
   * (key, value) index, so a label filter reads only the volumes that carry that label.
   */
  const listStatements = new Map<string, Database.Statement<string[], VolumeRaw>>();
  const listStatement = (labels: number, backend: boolean, status: boolean) => {
    const key = `${labels}/${backend}/${status}`;
    let stmt = listStatements.get(key);
    if (!stmt) {
      const where: string[] = [];
      for (let i = 0; i < labels; i++) {
        where.push(i === 0
          ? 'v.id IN (SELECT volume_id FROM volume_labels WHERE key = ? AND value = ?)'
          : 'EXISTS (SELECT 1 FROM volume_labels l WHERE l.volume_id = v.id AND l.key = ? AND l.value = ?)');
      }
      // With a label, "+" keeps SQLite from scanning the backend index instead.
      const plain = labels > 0 ? '+' : '';
      if (backend) where.push(`${plain}v.backend = ?`);
      if (status) where.push(`${plain}v.status = ?`);
      const sql = `SELECT ${VOLUME_COLUMNS} FROM volumes v ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY v.name`;
      stmt = db.prepare<string[], VolumeRaw>(sql).raw(true);
      listStatements.set(key, stmt);
    }
    return stmt;
  };

  const syncNormal = db.prepare('PRAGMA synchronous = NORMAL');
  const syncFull = db.prepare('PRAGMA synchronous = FULL');

  // The volumes table in memory (volume-cache.ts). Rules that keep it true: it changes only
  // after a write statement succeeded; a transaction that throws (rollback) drops it; a
  // commit by another connection (PRAGMA data_version moves) reloads it at the next read.
  // Only a shared connection can see another's commit: the daemon's holds the file
  // exclusively, so it skips the PRAGMA, a statement run on every read (several per volume
  // in a start-up reconcile: a tenth of the CPU of a 10,000-volume start).
  const othersCommit = opts.shared === true;
  const cache = new VolumeCache();
  let cacheLoaded = false;
  let cacheVersion = -1;
  const dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
  const allVolumes = db.prepare<[], VolumeRaw>(`SELECT ${VOLUME_COLUMNS} FROM volumes`).raw(true);
  // One volume's attachments and mount references, read on first use and dropped by every
  // write that touches them (and with the volumes copy above): Docker's Get, Mount and
  // Unmount read them several times per call. Frozen rows, handed out in a fresh array.
  const refsOf = new Map<string, readonly MountRefRow[]>();
  const attachmentsOf = new Map<string, readonly AttachmentRow[]>();
  const dropAll = () => {
    cacheLoaded = false;
    refsOf.clear();
    attachmentsOf.clear();
  };
  const fresh = (): VolumeCache => {
    if (cacheLoaded && !othersCommit) return cache;
    const v = dataVersion.get()!;
    if (!cacheLoaded || v !== cacheVersion) {
      refsOf.clear();
      attachmentsOf.clear();
      cache.load(allVolumes.all().map(toVolume));
      cacheLoaded = true;
      cacheVersion = v;
    }
    return cache;
  };
  /** Reads one volume's rows through `memo` (fresh() first, so another connection's commit drops it). */
  const memoized = <R, D>(memo: Map<string, readonly R[]>, volumeId: string, stmt: Database.Statement<[string], D>, to: (r: D) => R): R[] => {
    fresh();
    let rows = memo.get(volumeId);
    if (!rows) {
      rows = stmt.all(volumeId).map((r) => Object.freeze(to(r)));
      memo.set(volumeId, rows);
    }
    return rows.slice();
  };
  // One transaction function for every tx: db.transaction() builds a new wrapper (and its
  // deferred/immediate/exclusive variants) on each call, ~15 us per commit.
  const runInTx = db.transaction((fn: () => unknown) => fn());
  /** Runs a transaction; a throw rolls it back, and with it whatever the cache took in. */
  const transaction = <T>(fn: () => T): T => {
    try {
      return runInTx(fn) as T;
    } catch (err) {
      dropAll();
      throw err;
    }
  };
  const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
  /**
   * Every write goes through here. Inside a transaction it just runs (the outermost call
   * decides). Outermost, a SQLITE_FULL (the write rolled back whole) releases the space
   * reserve, lets a checkpoint move the WAL into the database so the WAL is reused from its
   * start, and retries once; full again, it is ResourceExhausted naming the database.
   */
  const write = <T>(fn: () => T): T => {
    if (db.inTransaction) return fn();
    try {
      return fn();
    } catch (err) {
      if (sqliteCode(err) !== 'SQLITE_FULL') throw err;
      dropAll();
      reserve?.release();
      try {
        checkpoint.run();
      } catch {
        /* a checkpoint that cannot finish leaves the WAL as it was */
      }
      try {
        return fn();
      } catch (again) {
        dropAll();
        throw sqliteCode(again) === 'SQLITE_FULL' ? storeFull(path, again) : again;
      }
    }
  };

  let closed = false;
  const store: Store = {
    tx<T>(fn: () => T, opts: TxOptions = {}): T {
      // better-sqlite3 turns a nested transaction() into a savepoint, so nesting is safe;
      // a nested call joins the outer transaction and so its durability.
      if (opts.durable !== false || db.inTransaction) return write(() => transaction(fn));
      syncNormal.run();
      try {
        return write(() => transaction(fn));
      } finally {
        syncFull.run();
      }
    },

    ensureHeadroom: () => reserve?.ensureHeadroom(),

    getVolume: (id) => fresh().get(id),
    getVolumeByName: (name) => fresh().getByName(name),
    listVolumes: (filter = {}) => {
      const labels = Object.entries(filter.labels ?? {});
      if (labels.length === 0) return fresh().list(filter);
      const params: string[] = [];
      for (const [k, v] of labels) params.push(k, v);
      if (filter.backend !== undefined) params.push(filter.backend);
      if (filter.status !== undefined) params.push(filter.status);
      return listStatement(labels.length, filter.backend !== undefined, filter.status !== undefined).all(...params).map(toVolume);
    },
    countVolumes: () => fresh().size,
    insertVolume: (v) => write(() => {
      const insert = () => {
        s.insertVolume.run({
          id: v.id, name: v.name, backend: v.backend, size_bytes: v.sizeBytes, fs_type: v.fsType, volume_mode: v.volumeMode,
          access_mode: v.accessMode, labels: JSON.stringify(v.labels), options: JSON.stringify(v.options),
          source_kind: v.sourceKind, source_id: v.sourceId, status: v.status, created_at: v.createdAt, node: v.node,
        });
        for (const [k, value] of Object.entries(v.labels)) s.insertLabel.run(v.id, k, value);
      };
      // Labels are written with their volume (one commit); they never change afterwards.
      const c = fresh();
      if (Object.keys(v.labels).length === 0) insert();
      else transaction(insert);
      c.insert(v);
    }),
    updateVolume: (id, patch: VolumePatch) => write(() => {
      const c = fresh();
      transaction(() => {
        if (patch.status !== undefined) s.setVolumeStatus.run(patch.status, id);
        if (patch.sizeBytes !== undefined) s.setVolumeSize.run(patch.sizeBytes, id);
      });
      c.patch(id, patch);
    }),
    deleteVolume: (id) => write(() => {
      const c = fresh();
      s.deleteVolume.run(id);
      c.remove(id);
      // ON DELETE CASCADE took its attachments with it; references are the core's to delete.
      attachmentsOf.delete(id);
    }),

    listAttachments: (volumeId) => (volumeId === undefined
      ? s.listAttachments.all().map(toAttachment)
      : memoized(attachmentsOf, volumeId, s.listAttachmentsOf, toAttachment)),
    putAttachment: (a) => write(() => {
      attachmentsOf.delete(a.volumeId);
      s.putAttachment.run({
        volume_id: a.volumeId, node: a.node, device: a.device, read_only: a.readOnly ? 1 : 0, implicit: a.implicit ? 1 : 0,
        path: a.path, created_at: a.createdAt,
      });
    }),
    deleteAttachment: (volumeId, node) => write(() => {
      attachmentsOf.delete(volumeId);
      s.deleteAttachment.run(volumeId, node);
    }),

    listMountRefs: (volumeId) => (volumeId === undefined
      ? s.listMountRefs.all().map(toMountRef)
      : memoized(refsOf, volumeId, s.listMountRefsOf, toMountRef)),
    listMountRefsNear: (target) => {
      const ancestors: string[] = [];
      for (let i = target.indexOf('/', 1); i > 0; i = target.indexOf('/', i + 1)) ancestors.push(target.slice(0, i));
      return s.listMountRefsNear.all({ t: target, below: `${target}/`, end: `${target}0`, ancestors: JSON.stringify(ancestors) }).map(toMountRef);
    },
    insertMountRef: (m) => write(() => {
      refsOf.delete(m.volumeId);
      s.insertMountRef.run({
        volume_id: m.volumeId, consumer: m.consumer, frontend: m.frontend, target: m.target, read_only: m.readOnly ? 1 : 0,
        state: m.state, created_at: m.createdAt, ...bindingParams(m),
      });
    }),
    setMountRefBinding: (volumeId, consumer, binding) => write(() => {
      refsOf.delete(volumeId);
      s.setMountRefBinding.run({ volume_id: volumeId, consumer, ...bindingParams(binding) });
    }),
    setMountRefState: (volumeId, consumer, state) => write(() => {
      refsOf.delete(volumeId);
      s.setMountRefState.run(state, volumeId, consumer);
    }),
    deleteMountRef: (volumeId, consumer) => write(() => {
      refsOf.delete(volumeId);
      s.deleteMountRef.run(volumeId, consumer);
    }),
    deleteMountRefs: (volumeId) => write(() => {
      refsOf.delete(volumeId);
      s.deleteMountRefs.run(volumeId);
    }),

    getSnapshot: (id) => {
      const r = s.getSnapshot.get(id);
      return r ? toSnapshot(r) : null;
    },
    getSnapshotByName: (name) => {
      const r = s.getSnapshotByName.get(name);
      return r ? toSnapshot(r) : null;
    },
    listSnapshots: (filter = {}) =>
      (filter.volumeId === undefined ? s.listSnapshots.all() : s.listSnapshotsOf.all(filter.volumeId)).map(toSnapshot),
    insertSnapshot: (r) => write(() => {
      s.insertSnapshot.run({
        id: r.id, name: r.name, volume_id: r.volumeId, backend: r.backend, size_bytes: r.sizeBytes,
        fs_type: r.fsType, volume_mode: r.volumeMode, status: r.status, created_at: r.createdAt,
      });
    }),
    setSnapshotStatus: (id, status) => write(() => {
      s.setSnapshotStatus.run(status, id);
    }),
    deleteSnapshot: (id) => write(() => {
      s.deleteSnapshot.run(id);
    }),

    close: () => {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
  return store;
}
