/**
 * What of berth's own state other local users may read: nothing. Docker keeps
 * /var/lib/docker at 0710, its volumes at 0701 and its metadata at 0600; berth does the same:
 * - the state root, the managed mount tree (<stateRoot>/mounts) and every backend's private
 *   directories (Backend.privateDirs) are 0700. One whose group an operator changed from
 *   root keeps traverse for that group (at most 0710): who needs a group to reach volume
 *   paths, e.g. for Docker's userns-remap, can chgrp and chmod g+x, as Docker does;
 * - state.db and its -wal / -shm files, and the space reserve: at most 0600;
 * - the log, when the daemon's stdout / stderr is a file (install.sh's /var/log/berth.log):
 *   at most 0640.
 * A volume's own root (dir: <root>/<id>, loop: mounts/<id>/data, btrfs: the subvolume) keeps
 * the mode its consumers expect (0755 when made, like Docker's _data): only its parents are
 * closed. Consumers never walk those parents: Docker, kubelet and Mesos run as root, and
 * containers see the volume through a bind mount.
 *
 * Start-up takes away what an older berth (or a loose umask) left open; each change is
 * reported once, in one log line.
 */
import { storeFiles } from './store/sqlite.js';
import { restrictFdMode, restrictMode, type ModeChange } from './os/modes.js';

/** Mode berth creates its private directories with. */
export const PRIVATE_DIR_MODE = 0o700;
/** The most an existing private directory keeps (see above). */
const PRIVATE_DIR_ALLOWED = (st: { gid: number }) => (st.gid === 0 ? 0o700 : 0o710);
const PRIVATE_FILE_ALLOWED = 0o600;
const LOG_FILE_ALLOWED = 0o640;

export type { ModeChange };

/**
 * Tightens the state root and the state database's files.
 * @example const changes = await tightenStateRoot('/var/lib/berth', '/var/lib/berth/state.db');
 */
export async function tightenStateRoot(stateRoot: string, dbPath: string): Promise<ModeChange[]> {
  const changes = [await restrictMode(stateRoot, PRIVATE_DIR_ALLOWED)];
  for (const f of [...storeFiles(dbPath), `${dbPath}.reserve`]) changes.push(await restrictMode(f, PRIVATE_FILE_ALLOWED));
  return changes.filter((c) => c !== null);
}

/**
 * Tightens directories that must not be readable by others (backend roots, the mount tree).
 * @example const changes = await tightenDirs(backend.privateDirs());
 */
export async function tightenDirs(dirs: readonly string[]): Promise<ModeChange[]> {
  const changes: ModeChange[] = [];
  for (const d of dirs) {
    const c = await restrictMode(d, PRIVATE_DIR_ALLOWED);
    if (c) changes.push(c);
  }
  return changes;
}

/**
 * Tightens the files the daemon's stdout and stderr write to, when they are files.
 * @example const changes = await tightenLogFiles();
 */
export async function tightenLogFiles(): Promise<ModeChange[]> {
  const out = await restrictFdMode(1, LOG_FILE_ALLOWED, '<stdout>');
  const err = await restrictFdMode(2, LOG_FILE_ALLOWED, '<stderr>');
  return [out, err].filter((c) => c !== null);
}
