import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from './migrations.js';
import { openStore } from './sqlite.js';
import type { Store, VolumeRow } from './store.js';

const vol = (id: string, name: string, over: Partial<VolumeRow> = {}): VolumeRow => ({
  id, name, backend: 'local', sizeBytes: 1024, fsType: 'ext4', volumeMode: 'filesystem', accessMode: 'ReadWriteOnce',
  labels: { a: '1' }, options: { tier: 'x' }, sourceKind: null, sourceId: null, status: 'ready', createdAt: '2024-01-01T00:00:00.000Z',
  node: null, ...over,
});

describe('SQLite store', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-store-'));
    // Shared: several tests look at the file from a second connection.
    store = openStore(join(dir, 'sub', 'state.db'), { shared: true });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens in WAL mode with synchronous=FULL, foreign keys and the latest schema', () => {
    store.close();
    const db = new Database(join(dir, 'sub', 'state.db'));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
    db.close();
    store = openStore(join(dir, 'sub', 'state.db'));
  });

  it('holds the file exclusively by default: no -shm file, a second opener is refused, files are 0600', () => {
    const path = join(dir, 'sub', 'state.db');
    // Shared (tests only), SQLite makes a -shm file: it copies the database's mode too.
    store.insertVolume(vol('vol-0', 'zero'));
    expect(['state.db', 'state.db-wal', 'state.db-shm'].map((f) => (statSync(join(dir, 'sub', f)).mode & 0o777).toString(8))).toEqual(['600', '600', '600']);
    store.close();
    store = openStore(path);
    store.insertVolume(vol('vol-1', 'one'));
    expect(existsSync(`${path}-shm`)).toBe(false);
    expect(() => openStore(path, { lockWaitMs: 50 })).toThrow(expect.objectContaining({
      kind: 'FailedPrecondition', message: expect.stringContaining(`${path} is locked by another process`),
    }));
    expect(() => new Database(path, { timeout: 50 }).prepare('SELECT count(*) FROM volumes').get()).toThrow(/locked/);
    for (const f of [path, `${path}-wal`, `${path}.reserve`]) expect((statSync(f).mode & 0o777).toString(8), f).toBe('600');
    store.close();
    store = openStore(path, { lockWaitMs: 50 }); // released on close
    expect(store.getVolumeByName('one')?.id).toBe('vol-1');
  });

  it('round-trips volumes and survives reopening the file', () => {
    store.insertVolume(vol('vol-1', 'one'));
    store.updateVolume('vol-1', { status: 'deleting', sizeBytes: 2048 });
    store.close();
    store = openStore(join(dir, 'sub', 'state.db'));
    expect(store.getVolume('vol-1')).toEqual(vol('vol-1', 'one', { status: 'deleting', sizeBytes: 2048 }));
    expect(store.getVolumeByName('one')?.id).toBe('vol-1');
    expect(store.getVolume('nope')).toBeNull();
  });

  it('enforces unique names', () => {
    store.insertVolume(vol('vol-1', 'dup'));
    expect(() => store.insertVolume(vol('vol-2', 'dup'))).toThrow(/UNIQUE/);
  });

  it('lists by backend and status, ordered by name', () => {
    store.insertVolume(vol('vol-1', 'b'));
    store.insertVolume(vol('vol-2', 'a', { backend: 'fast' }));
    store.insertVolume(vol('vol-3', 'c', { status: 'creating' }));
    expect(store.listVolumes().map((v) => v.name)).toEqual(['a', 'b', 'c']);
    expect(store.listVolumes({ backend: 'local' }).map((v) => v.name)).toEqual(['b', 'c']);
    expect(store.listVolumes({ status: 'creating' }).map((v) => v.name)).toEqual(['c']);
    expect(store.listVolumes({ backend: 'local', status: 'ready' }).map((v) => v.name)).toEqual(['b']);
    expect(store.countVolumes()).toBe(3);
  });

  it('deleting a volume deletes its attachments (foreign key); mount references are node facts, deleted on their own', () => {
    store.insertVolume(vol('vol-1', 'one'));
    store.putAttachment({ volumeId: 'vol-1', node: 'n1', device: '/dev/loop1', readOnly: false, implicit: true, path: null, createdAt: 't' });
    store.putAttachment({ volumeId: 'vol-1', node: 'n1', device: '/dev/loop2', readOnly: true, implicit: false, path: null, createdAt: 't' });
    store.insertMountRef({ volumeId: 'vol-1', consumer: 'c1', frontend: 'docker', target: null, readOnly: false, state: 'pending', createdAt: 't' });
    store.setMountRefState('vol-1', 'c1', 'committed');
    expect(store.listAttachments('vol-1')).toEqual([{ volumeId: 'vol-1', node: 'n1', device: '/dev/loop2', readOnly: true, implicit: false, path: null, createdAt: 't' }]);
    expect(store.listMountRefs()).toMatchObject([{ consumer: 'c1', state: 'committed' }]);
    // In cluster mode the volumes live in etcd: a reference needs no local volume row.
    store.insertMountRef({ volumeId: 'vol-elsewhere', consumer: 'c', frontend: 'docker', target: null, readOnly: false, state: 'pending', createdAt: 't' });
    store.deleteVolume('vol-1');
    expect(store.listAttachments()).toEqual([]);
    expect(store.listMountRefs().map((r) => r.volumeId)).toEqual(['vol-1', 'vol-elsewhere']);
    store.deleteMountRefs('vol-1');
    expect(store.listMountRefs().map((r) => r.volumeId)).toEqual(['vol-elsewhere']);
  });

  it('tx rolls back every write when fn throws', () => {
    expect(() =>
      store.tx(() => {
        store.insertVolume(vol('vol-1', 'one'));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(store.countVolumes()).toBe(0);
  });

  it('runtime (non-durable) commits are visible at once to other connections, roll back on throw and join an outer tx', () => {
    store.insertVolume(vol('vol-1', 'one'));
    const ref = { volumeId: 'vol-1', frontend: 'docker' as const, target: null, readOnly: false, state: 'pending' as const, createdAt: 't' };
    store.tx(() => store.insertMountRef({ ...ref, consumer: 'c1' }), { durable: false });
    const other = new Database(join(dir, 'sub', 'state.db'), { readonly: true });
    try {
      expect(other.prepare('SELECT consumer FROM mount_refs').all()).toEqual([{ consumer: 'c1' }]);
      expect(() => store.tx(() => {
        store.insertMountRef({ ...ref, consumer: 'c2' });
        throw new Error('boom');
      }, { durable: false })).toThrow('boom');
      // A runtime tx nested in a durable one is part of it: the outer rollback undoes both.
      expect(() => store.tx(() => {
        store.tx(() => store.insertMountRef({ ...ref, consumer: 'c3' }), { durable: false });
        throw new Error('outer');
      })).toThrow('outer');
      store.tx(() => store.setMountRefState('vol-1', 'c1', 'committed'));
      expect(other.prepare('SELECT consumer, state FROM mount_refs').all()).toEqual([{ consumer: 'c1', state: 'committed' }]);
    } finally {
      other.close();
    }
    store.close();
    store = openStore(join(dir, 'sub', 'state.db'), { shared: true });
    expect(store.listMountRefs().map((r) => r.consumer)).toEqual(['c1']);
  });

  it('filters volumes by labels (every pair), backend and status in SQL, ordered by name', () => {
    store.insertVolume(vol('vol-1', 'b', { labels: { app: 'db', tier: 'gold' } }));
    store.insertVolume(vol('vol-2', 'a', { labels: { app: 'db', tier: 'silver' }, backend: 'loop' }));
    store.insertVolume(vol('vol-3', 'c', { labels: { app: 'web' }, status: 'creating' }));
    store.insertVolume(vol('vol-4', 'd', { labels: {} }));
    const names = (f: Parameters<Store['listVolumes']>[0]) => store.listVolumes(f).map((v) => v.name);
    expect(names({ labels: { app: 'db' } })).toEqual(['a', 'b']);
    expect(names({ labels: { app: 'db', tier: 'gold' } })).toEqual(['b']);
    expect(names({ labels: { tier: 'gold', app: 'web' } })).toEqual([]);
    expect(names({ labels: { app: 'db' }, backend: 'loop' })).toEqual(['a']);
    expect(names({ labels: { app: 'web' }, status: 'creating' })).toEqual(['c']);
    expect(names({ backend: 'local', status: 'ready' })).toEqual(['b', 'd']);
    expect(names({ labels: {} })).toEqual(['a', 'b', 'c', 'd']);
    expect(store.listVolumes({ labels: { tier: 'silver' } })[0]).toMatchObject({ id: 'vol-2', labels: { app: 'db', tier: 'silver' } });
    // Labels go with their volume.
    store.deleteVolume('vol-1');
    expect(names({ labels: { app: 'db' } })).toEqual(['a']);
  });

  it('migration 3 indexes the labels of volumes written by an older berth', () => {
    store.close();
    const path = join(dir, 'old.db');
    const db = new Database(path);
    for (const m of MIGRATIONS.filter((x) => x.version <= 2)) db.exec(m.sql);
    db.pragma('user_version = 2');
    db.prepare(`INSERT INTO volumes (id, name, backend, size_bytes, volume_mode, access_mode, labels, options, status, created_at)
      VALUES ('vol-1', 'old', 'local', 0, 'filesystem', 'ReadWriteOnce', '{"team":"x","n":"1"}', '{}', 'ready', 't')`).run();
    db.close();
    store = openStore(path);
    expect(store.listVolumes({ labels: { team: 'x', n: '1' } }).map((v) => v.name)).toEqual(['old']);
    expect(store.listVolumes({ labels: { team: 'y' } })).toEqual([]);
  });

  it('migration 4: references of an older berth keep their target, with the volume\'s path as what their bind shows', () => {
    store.close();
    const path = join(dir, 'v3.db');
    const db = new Database(path);
    for (const m of MIGRATIONS.filter((x) => x.version <= 3)) db.exec(m.sql);
    db.pragma('user_version = 3');
    db.prepare(`INSERT INTO volumes (id, name, backend, size_bytes, volume_mode, access_mode, status, created_at, path)
      VALUES ('vol-1', 'old', 'local', 0, 'filesystem', 'ReadWriteOnce', 'ready', 't', '/srv/vols/vol-1')`).run();
    const ref = db.prepare(`INSERT INTO mount_refs (volume_id, consumer, frontend, target, read_only, state, created_at)
      VALUES ('vol-1', ?, 'admin', ?, 0, 'committed', 't')`);
    ref.run('a', '/mnt/a');
    ref.run('b', null);
    db.close();
    store = openStore(path);
    expect(store.listMountRefs('vol-1')).toMatchObject([
      { consumer: 'a', target: '/mnt/a', targetCreated: false, bindSource: '/srv/vols/vol-1', bindMount: null },
      { consumer: 'b', target: null, targetCreated: false, bindSource: null, bindMount: null },
    ]);
  });

  it('records a reference\'s target binding, and finds references at, below and above a path', () => {
    store.insertVolume(vol('vol-1', 'one'));
    const ref = { volumeId: 'vol-1', frontend: 'admin' as const, readOnly: false, state: 'pending' as const, createdAt: 't' };
    store.insertMountRef({ ...ref, consumer: 'a', target: '/mnt/a', bindSource: '/src' });
    expect(store.listMountRefs('vol-1')[0]).toMatchObject({ targetCreated: false, bindSource: '/src', bindMount: null });
    store.setMountRefBinding('vol-1', 'a', { targetCreated: true, bindSource: '/src2', bindMount: { id: 77, majorMinor: '7:3', root: '/data' } });
    expect(store.listMountRefs('vol-1')[0]).toMatchObject({ targetCreated: true, bindSource: '/src2', bindMount: { id: 77, majorMinor: '7:3', root: '/data' } });
    for (const [c, t] of [['b', '/mnt/a/b/c'], ['c', '/mnt/ab'], ['d', '/mnt'], ['e', '/mnt/a0'], ['f', null]] as const) {
      store.insertMountRef({ ...ref, consumer: c, target: t });
    }
    const near = (t: string) => store.listMountRefsNear(t).map((r) => r.consumer);
    expect(near('/mnt/a')).toEqual(['a', 'b', 'd']);
    expect(near('/mnt/a/b')).toEqual(['a', 'b', 'd']);
    expect(near('/mnt/ab')).toEqual(['c', 'd']);
    expect(near('/srv')).toEqual([]);
  });

  it('reads from memory but never shows a rolled-back write or misses another connection\'s commit', () => {
    store.insertVolume(vol('vol-1', 'one'));
    expect(() => store.tx(() => {
      store.insertVolume(vol('vol-2', 'two'));
      store.updateVolume('vol-1', { sizeBytes: 1 });
      expect(store.getVolumeByName('two')).not.toBeNull(); // the transaction sees its own writes
      throw new Error('boom');
    })).toThrow('boom');
    expect(store.getVolumeByName('two')).toBeNull();
    expect(store.getVolume('vol-1')?.sizeBytes).toBe(1024);
    expect(store.countVolumes()).toBe(1);
    const other = new Database(join(dir, 'sub', 'state.db'));
    try {
      other.prepare(`UPDATE volumes SET status = 'error' WHERE id = 'vol-1'`).run();
      other.prepare(`INSERT INTO volumes (id, name, backend, size_bytes, volume_mode, access_mode, status, created_at)
        VALUES ('vol-0', 'zero', 'local', 0, 'filesystem', 'ReadWriteOnce', 'ready', 't')`).run();
    } finally {
      other.close();
    }
    expect(store.getVolume('vol-1')?.status).toBe('error');
    expect(store.listVolumes().map((v) => v.name)).toEqual(['one', 'zero']);
  });

  it('one volume\'s references and attachments follow every write, rollback, cascade and another connection\'s commit', () => {
    store.insertVolume(vol('vol-1', 'one'));
    const ref = { volumeId: 'vol-1', frontend: 'docker' as const, target: null, readOnly: false, state: 'pending' as const, createdAt: 't' };
    const att = { volumeId: 'vol-1', node: 'n1', device: null, readOnly: false, implicit: true, path: null, createdAt: 't' };
    const consumers = () => store.listMountRefs('vol-1').map((r) => `${r.consumer}:${r.state}`);
    expect(consumers()).toEqual([]); // read (and remembered) before any write
    store.insertMountRef({ ...ref, consumer: 'c1' });
    expect(consumers()).toEqual(['c1:pending']);
    store.setMountRefState('vol-1', 'c1', 'committed');
    expect(consumers()).toEqual(['c1:committed']);
    store.putAttachment(att);
    expect(store.listAttachments('vol-1')).toMatchObject([{ node: 'n1', device: null }]);
    store.putAttachment({ ...att, device: '/dev/loop7' });
    expect(store.listAttachments('vol-1')).toMatchObject([{ node: 'n1', device: '/dev/loop7' }]);
    // The caller's array is its own; the rows are shared and frozen.
    const mine = store.listMountRefs('vol-1');
    mine.pop();
    expect(consumers()).toEqual(['c1:committed']);
    expect(Object.isFrozen(store.listMountRefs('vol-1')[0])).toBe(true);

    expect(() => store.tx(() => {
      store.insertMountRef({ ...ref, consumer: 'c2' });
      store.deleteAttachment('vol-1', 'n1');
      expect(consumers()).toEqual(['c1:committed', 'c2:pending']); // the transaction sees its own writes
      expect(store.listAttachments('vol-1')).toEqual([]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(consumers()).toEqual(['c1:committed']);
    expect(store.listAttachments('vol-1')).toHaveLength(1);

    const other = new Database(join(dir, 'sub', 'state.db'));
    try {
      other.prepare(`INSERT INTO mount_refs (volume_id, consumer, frontend, target, read_only, state, created_at)
        VALUES ('vol-1', 'c3', 'csi', NULL, 0, 'committed', 't')`).run();
      other.prepare(`DELETE FROM attachments WHERE volume_id = 'vol-1'`).run();
    } finally {
      other.close();
    }
    expect(consumers()).toEqual(['c1:committed', 'c3:committed']);
    expect(store.listAttachments('vol-1')).toEqual([]);

    store.putAttachment(att);
    store.deleteMountRef('vol-1', 'c3');
    expect(consumers()).toEqual(['c1:committed']);
    store.deleteVolume('vol-1'); // ON DELETE CASCADE (attachments)
    expect(store.listAttachments('vol-1')).toEqual([]);
    store.deleteMountRefs('vol-1');
    expect(store.listMountRefs('vol-1')).toEqual([]);
  });

  it('keeps the name order through inserts, updates and deletes, and hands out frozen rows', () => {
    const names = ['m', 'a', 'z', 'b-1', 'b', 'B', '0'];
    names.forEach((n, i) => store.insertVolume(vol(`vol-${i}`, n, { backend: i % 2 ? 'loop' : 'local' })));
    store.updateVolume('vol-2', { status: 'deleting', sizeBytes: 7 });
    store.deleteVolume('vol-0');
    const expected = ['0', 'B', 'a', 'b', 'b-1', 'z'];
    expect(store.listVolumes().map((v) => v.name)).toEqual(expected);
    expect(store.listVolumes({ backend: 'loop' }).map((v) => v.name)).toEqual(['B', 'a', 'b-1']);
    expect(store.listVolumes({ status: 'deleting' })).toMatchObject([{ name: 'z', sizeBytes: 7 }]);
    const row = store.getVolume('vol-2')!;
    expect(Object.isFrozen(row) && Object.isFrozen(row.labels)).toBe(true);
    // Same answers straight from SQLite after a reopen.
    store.close();
    store = openStore(join(dir, 'sub', 'state.db'));
    expect(store.listVolumes().map((v) => v.name)).toEqual(expected);
  });

  it('stores snapshots independent of their volume', () => {
    store.insertSnapshot({ id: 'snap-1', name: 's', volumeId: 'vol-gone', backend: 'local', sizeBytes: 5, fsType: 'xfs', volumeMode: 'filesystem', status: 'creating', createdAt: 't' });
    store.setSnapshotStatus('snap-1', 'ready');
    expect(store.getSnapshotByName('s')).toMatchObject({ id: 'snap-1', status: 'ready', fsType: 'xfs' });
    expect(store.listSnapshots({ volumeId: 'vol-gone' })).toHaveLength(1);
    store.deleteSnapshot('snap-1');
    expect(store.getSnapshot('snap-1')).toBeNull();
  });

  it('refuses a database written by a newer berth', () => {
    store.close();
    const db = new Database(join(dir, 'sub', 'state.db'));
    db.pragma('user_version = 999');
    db.close();
    expect(() => openStore(join(dir, 'sub', 'state.db'))).toThrow(/newer/);
    store = openStore(join(dir, 'other.db'));
  });
});
