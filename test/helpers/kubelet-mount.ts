/**
 * The mount checks a real kubelet (v1.26, k8s.io/mount-utils) makes around the calls it makes
 * of a volume driver, as plain functions over the real kernel, so the FlexVolume and CSI
 * suites hold berth's answers to the kubelet's own rules without a kubelet
 * (kubelet-flex.ts, kubelet-csi.ts drive them in kubelet's call order). Written from the
 * kubelet sources, independent of berth's own mount code:
 *
 * - IsLikelyNotMountPoint (mount_linux.go): stat the path and its parent and compare st_dev;
 *   equal means "not a mount point". mountinfo is not read, so a bind mount of a directory
 *   of the same filesystem as the parent looks unmounted.
 * - GetMountRefs / SearchMountPoints + HasMountRefs (mount_linux.go, volume/util): before
 *   UnmountDevice, every other mount of the same filesystem root is a reference that blocks
 *   it, unless its path contains the plugin-relative part of the device mount path.
 * - removeMountDir (volume/csi/csi_mounter.go): after NodeUnpublish / NodeUnstage, remove the
 *   directory, vol_data.json and the parent, but only when the directory looks unmounted
 *   (otherwise it is kept without an error).
 *
 * @example if (isLikelyNotMountPoint(dm)) log('already unmounted'); else await call('unmountdevice', dm);
 */
import { existsSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** mount-utils IsLikelyNotMountPoint: throws like os.Stat (ENOENT) when the path is missing. */
export function isLikelyNotMountPoint(path: string): boolean {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, '') : path;
  return statSync(trimmed).dev === statSync(dirname(trimmed)).dev;
}

/** mount-utils PathExists (os.Stat, following links). */
export const pathExists = (path: string): boolean => existsSync(path);

interface MountInfoLine {
  readonly id: number;
  readonly majorMinor: string;
  readonly root: string;
  readonly mountPoint: string;
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function mountInfo(): MountInfoLine[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const f = line.split(' ');
    return { id: Number(f[0]), majorMinor: f[2]!, root: unescape(f[3]!), mountPoint: unescape(f[4]!) };
  });
}

const within = (path: string, base: string) => {
  const rel = relative(base, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
};

/**
 * mount-utils GetMountRefs -> SearchMountPoints: the mount points showing the same filesystem
 * root (major:minor and root) as `path` does, other than the mount `path` is on.
 */
export function getMountRefs(path: string): string[] {
  if (!existsSync(path)) return [];
  const all = mountInfo();
  let found: (MountInfoLine & { rootPath: string }) | null = null;
  for (let i = all.length - 1; i >= 0; i--) {
    const m = all[i]!;
    if (path === m.mountPoint || within(path, m.mountPoint)) {
      found = { ...m, rootPath: join(m.root, path.slice(m.mountPoint.length) || '/') };
      break;
    }
  }
  if (!found) throw new Error(`failed to get root path and major:minor for ${path}`);
  return all.filter((m) => m.id !== found.id && m.root === found.rootPath && m.majorMinor === found.majorMinor).map((m) => m.mountPoint);
}

const PLUGIN_PATH_PREFIX = '/plugins/kubernetes.io/';

/** volume/util HasMountRefs: a reference outside the plugin's own tree blocks UnmountDevice. */
export function hasMountRefs(mountPath: string, refs: readonly string[]): boolean {
  const i = mountPath.indexOf(PLUGIN_PATH_PREFIX);
  const pathToFind = i > -1 ? mountPath.slice(i) : mountPath;
  return refs.some((ref) => !ref.includes(pathToFind));
}

/** What removeMountDir did: removed the directory (and its metadata), or kept it because it looked mounted. */
export type RemoveMountDirOutcome = 'removed' | 'kept-mounted';

/**
 * csi_mounter.go removeMountDir: when `mountPath` does not look mounted, remove it, the
 * vol_data.json beside it and the parent directory (each "not exist" is fine, anything else
 * throws, e.g. EBUSY or ENOTEMPTY); when it looks mounted, keep everything and report it.
 */
export function removeMountDir(mountPath: string): RemoveMountDirOutcome {
  if (existsSync(mountPath) && !isLikelyNotMountPoint(mountPath)) return 'kept-mounted';
  removeIfPresent(mountPath);
  const volPath = dirname(mountPath);
  rmSync(join(volPath, 'vol_data.json'), { force: true });
  removeIfPresent(volPath);
  return 'removed';
}

/** os.Remove that ignores "not exist": rmdir for directories, unlink for anything else. */
export function removeIfPresent(path: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (isDir) rmdirSync(path);
  else rmSync(path);
}
