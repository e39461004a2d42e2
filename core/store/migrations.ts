/**
 * Numbered schema migrations, applied in order at open inside one transaction each.
 * `PRAGMA user_version` records the last one applied. Never edit a released migration:
 * add the next number.
 */
export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'volumes, attachments, mount references, snapshots',
    sql: `
      CREATE TABLE volumes (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        backend     TEXT NOT NULL,
        size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
        fs_type     TEXT,
        volume_mode TEXT NOT NULL CHECK (volume_mode IN ('filesystem', 'block')),
        access_mode TEXT NOT NULL,
        labels      TEXT NOT NULL DEFAULT '{}',
        options     TEXT NOT NULL DEFAULT '{}',
        source_kind TEXT CHECK (source_kind IN ('snapshot', 'volume')),
        source_id   TEXT,
        status      TEXT NOT NULL CHECK (status IN ('creating', 'ready', 'deleting', 'error')),
        created_at  TEXT NOT NULL,
        path        TEXT
      ) STRICT;
      CREATE INDEX volumes_backend ON volumes (backend, name);
      CREATE INDEX volumes_status ON volumes (status) WHERE status <> 'ready';

      CREATE TABLE attachments (
        volume_id  TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
        node       TEXT NOT NULL,
        device     TEXT,
        read_only  INTEGER NOT NULL,
        implicit   INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (volume_id, node)
      ) STRICT;

      CREATE TABLE mount_refs (
        volume_id  TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
        consumer   TEXT NOT NULL,
        frontend   TEXT NOT NULL,
        target     TEXT,
        read_only  INTEGER NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
        created_at TEXT NOT NULL,
        PRIMARY KEY (volume_id, consumer)
      ) STRICT;

      -- Snapshots outlive their source volume (btrfs snapshots and loop copies are independent),
      -- so volume_id is a plain column, not a foreign key.
      CREATE TABLE snapshots (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        volume_id  TEXT NOT NULL,
        backend    TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('creating', 'ready', 'deleting')),
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX snapshots_volume ON snapshots (volume_id);
    `,
  },
  {
    version: 2,
    description: 'snapshots remember the filesystem and mode of their source, so a restore needs neither',
    sql: `
      ALTER TABLE snapshots ADD COLUMN fs_type TEXT;
      ALTER TABLE snapshots ADD COLUMN volume_mode TEXT NOT NULL DEFAULT 'filesystem'
        CHECK (volume_mode IN ('filesystem', 'block'));
      UPDATE snapshots SET fs_type = (SELECT fs_type FROM volumes WHERE volumes.id = snapshots.volume_id),
        volume_mode = COALESCE((SELECT volume_mode FROM volumes WHERE volumes.id = snapshots.volume_id), 'filesystem');
    `,
  },
  {
    version: 3,
    description: 'labels in their own indexed table, so a label-filtered list reads only the matching volumes',
    sql: `
      CREATE TABLE volume_labels (
        volume_id TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
        key       TEXT NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (volume_id, key)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX volume_labels_kv ON volume_labels (key, value);
      INSERT INTO volume_labels (volume_id, key, value)
        SELECT volumes.id, j.key, CAST(j.value AS TEXT) FROM volumes, json_each(volumes.labels) AS j;
    `,
  },
  {
    version: 4,
    description: 'mount references remember whether berth made their target and which bind mount it made there',
    // References written before this know neither: berth keeps such a target (directory or
    // file) and recognises its bind by what it shows (bind_source, the volume's path).
    sql: `
      ALTER TABLE mount_refs ADD COLUMN target_created INTEGER NOT NULL DEFAULT 0 CHECK (target_created IN (0, 1));
      ALTER TABLE mount_refs ADD COLUMN bind_source TEXT;
      ALTER TABLE mount_refs ADD COLUMN bind_mount_id INTEGER;
      ALTER TABLE mount_refs ADD COLUMN bind_dev TEXT;
      ALTER TABLE mount_refs ADD COLUMN bind_root TEXT;
      UPDATE mount_refs SET bind_source = (SELECT path FROM volumes WHERE volumes.id = mount_refs.volume_id)
        WHERE target IS NOT NULL;
      CREATE INDEX mount_refs_target ON mount_refs (target) WHERE target IS NOT NULL;
    `,
  },
  {
    version: 5,
    description: 'cluster-aware records: the home node of a local volume, each attachment\'s mounted path; mount references are node facts with no foreign key to volumes',
    // Where a volume is mounted is now per node, on that node's attachment (volumes.path is no
    // longer read); the start-up reconcile records it again for every mounted volume. Mount
    // references stay in the node's own SQLite in every mode, and in cluster mode the volumes
    // they belong to live in etcd, so they cannot point at a local volumes row.
    sql: `
      ALTER TABLE volumes ADD COLUMN node TEXT;
      ALTER TABLE attachments ADD COLUMN path TEXT;
      CREATE TABLE mount_refs_v5 (
        volume_id      TEXT NOT NULL,
        consumer       TEXT NOT NULL,
        frontend       TEXT NOT NULL,
        target         TEXT,
        read_only      INTEGER NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
        created_at     TEXT NOT NULL,
        target_created INTEGER NOT NULL DEFAULT 0 CHECK (target_created IN (0, 1)),
        bind_source    TEXT,
        bind_mount_id  INTEGER,
        bind_dev       TEXT,
        bind_root      TEXT,
        PRIMARY KEY (volume_id, consumer)
      ) STRICT;
      INSERT INTO mount_refs_v5 (volume_id, consumer, frontend, target, read_only, state, created_at, target_created, bind_source,
          bind_mount_id, bind_dev, bind_root)
        SELECT volume_id, consumer, frontend, target, read_only, state, created_at, target_created, bind_source, bind_mount_id,
          bind_dev, bind_root FROM mount_refs ORDER BY rowid;
      DROP TABLE mount_refs;
      ALTER TABLE mount_refs_v5 RENAME TO mount_refs;
      CREATE INDEX mount_refs_target ON mount_refs (target) WHERE target IS NOT NULL;
    `,
  },
];
