/**
 * The one door to berth's system-call addon (native/*.c, built by `npm ci` into
 * build/Release/berth_os.node): mount, bind, umount2, loop attach / detach / capacity,
 * BLKGETSIZE64, BLKROGET / BLKROSET, FS_IOC_SHUTDOWN and statfs without a process.
 *
 * Each call runs on a thread of its own inside the addon, so a call that hangs in the kernel
 * never blocks the event loop nor libuv's shared thread pool; here every call gets a deadline
 * (the promise rejects; the kernel call keeps its thread until it returns) and its arguments
 * are checked before they cross (the addon checks types, lengths, NUL bytes and flag bits
 * again). Only core/os/ imports this module (test/architecture.test.ts).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { internal, invalidArgument } from '../errors.js';

/** What the addon's calls reject with: the errno, its name and the step that failed. */
export interface SysCallError extends Error {
  readonly code: string;
  readonly errno: number;
  /** "mount", "umount2", "LOOP_CONFIGURE", "open the image", ... */
  readonly syscall: string;
}

export const isSysCallError = (err: unknown): err is SysCallError =>
  err instanceof Error && typeof (err as Partial<SysCallError>).errno === 'number' && typeof (err as Partial<SysCallError>).syscall === 'string';

export interface StatfsResult {
  readonly type: number;
  readonly bsize: number;
  readonly frsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly namelen: number;
  /** ST_* mount flags (ST_RDONLY = 1, ST_NOSUID = 2, ...). */
  readonly flags: number;
}

/** Kernel constants as the addon was compiled with them (from the system's headers). */
export interface SysConstants {
  readonly MS_RDONLY: number;
  readonly MS_NOSUID: number;
  readonly MS_NODEV: number;
  readonly MS_NOEXEC: number;
  readonly MS_NOATIME: number;
  readonly MS_NODIRATIME: number;
  readonly MS_RELATIME: number;
  readonly MS_STRICTATIME: number;
  readonly MS_SILENT: number;
  readonly MOUNT_ATTR_RDONLY: number;
  readonly MOUNT_ATTR_NOSUID: number;
  readonly MOUNT_ATTR_NODEV: number;
  readonly MOUNT_ATTR_NOEXEC: number;
  readonly MOUNT_ATTR__ATIME: number;
  readonly MOUNT_ATTR_RELATIME: number;
  readonly MOUNT_ATTR_NOATIME: number;
  readonly MOUNT_ATTR_STRICTATIME: number;
  readonly MOUNT_ATTR_NODIRATIME: number;
  readonly MNT_DETACH: number;
  readonly UMOUNT_NOFOLLOW: number;
  readonly FS_SHUTDOWN_FLAGS_DEFAULT: number;
  readonly FS_SHUTDOWN_FLAGS_LOGFLUSH: number;
  readonly FS_SHUTDOWN_FLAGS_NOLOGFLUSH: number;
  readonly LOOP_MAJOR: number;
  readonly TARGET_DIR: number;
  readonly TARGET_FILE: number;
}

/** The addon's exports (native/addon.c). */
export interface NativeOs {
  mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): Promise<void>;
  bind(source: string, target: string, attrSet: number, attrClr: number): Promise<void>;
  /** A bind that makes a missing target first (kind TARGET_DIR / TARGET_FILE); true when it made it. */
  bindCreate(source: string, target: string, attrSet: number, attrClr: number, kind: number): Promise<boolean>;
  umount(target: string, flags: number): Promise<void>;
  /** umount2(target, 0), then the target removed if it is an empty directory or file; true when it went. */
  umountRemove(target: string): Promise<boolean>;
  loopAttach(image: string, readOnly: boolean): Promise<{ device: string; existing: boolean }>;
  loopDetach(device: string): Promise<void>;
  loopSetCapacity(device: string): Promise<void>;
  blockSize(device: string): Promise<number>;
  blockReadOnly(device: string): Promise<boolean>;
  setBlockReadOnly(device: string, readOnly: boolean): Promise<void>;
  fsShutdown(mountpoint: string, how: number, devMajor: number | null, devMinor: number | null): Promise<void>;
  statfs(path: string): Promise<StatfsResult>;
  readonly constants: SysConstants;
}

const ADDON = join('build', 'Release', 'berth_os.node');

/**
 * Loads the addon from the checkout this module lives in: core/os/ when run from source,
 * dist/ when bundled. An Error (not a throw) when it is missing, so modules that only parse
 * still import; every call then says how to build it.
 */
function loadAddon(): NativeOs | Error {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here, i = 0; i < 4; dir = dirname(dir), i++) {
    const path = join(dir, ADDON);
    if (!existsSync(path)) continue;
    try {
      return createRequire(import.meta.url)(path) as NativeOs;
    } catch (err) {
      return new Error(`cannot load berth's system-call addon ${path}: ${err instanceof Error ? err.message : String(err)} (rebuild it: npm run native)`);
    }
  }
  return new Error(`berth's system-call addon is not built (no ${ADDON} above ${here}): run npm ci, or npm run native, in the berth checkout`);
}

const ADDON_OR_ERROR = loadAddon();

/** The loaded addon; Internal naming the fix when it could not be loaded. */
export function nativeOs(): NativeOs {
  if (ADDON_OR_ERROR instanceof Error) throw internal(ADDON_OR_ERROR.message, ADDON_OR_ERROR);
  return ADDON_OR_ERROR;
}

/** How long berth waits for one mount-type call (the same deadline mount(8) had). */
export const SYS_TIMEOUT_MS = 60_000;

/**
 * Runs one addon call with a deadline. `what` says what the call does, for the timeout and
 * for a refused argument ("bind-mounting /a on /b"). A call that passes its deadline is
 * reported as Internal; the kernel call itself cannot be interrupted and keeps its own
 * thread until it returns, so nothing else waits on it. The pending timer also keeps the
 * process alive while the call runs (the addon's own channel does not).
 * @example await sysCall('unmounting /x', (os) => os.umount('/x', 0));
 */
export function sysCall<T>(what: string, call: (os: NativeOs) => Promise<T>, timeoutMs = SYS_TIMEOUT_MS): Promise<T> {
  let pending: Promise<T>;
  try {
    pending = call(nativeOs());
  } catch (err) {
    // The addon refused an argument synchronously: the checks here should have caught it first.
    return Promise.reject(err instanceof Error && !('kind' in err) ? internal(`${what}: refused argument: ${err.message}`, err) : err);
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const limit = timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`;
      reject(internal(`${what} did not return within ${limit}: the kernel is still in the call (a hung filesystem or device?)`));
    }, timeoutMs);
    pending.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const MAX_PATH_BYTES = 4095;

/**
 * Checks a path before it reaches a system call: a string, absolute, no NUL, under 4096
 * bytes. Refusals are InvalidArgument naming `field`.
 */
export function checkSysPath(field: string, path: unknown): string {
  if (typeof path !== 'string' || path === '') throw invalidArgument(field, 'must be a non-empty absolute path');
  if (path.includes('\0')) throw invalidArgument(field, 'must not contain NUL');
  if (!path.startsWith('/')) throw invalidArgument(field, `"${path}" must be an absolute path`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw invalidArgument(field, `is longer than ${MAX_PATH_BYTES} bytes`);
  return path;
}

/** Loop device nodes: "/dev/loop" and a number. */
export const LOOP_DEVICE_RE = /^\/dev\/loop\d{1,7}$/;

export function checkLoopDevice(field: string, device: unknown): string {
  if (typeof device !== 'string' || !LOOP_DEVICE_RE.test(device)) throw invalidArgument(field, `${JSON.stringify(device)} is not a loop device (/dev/loop<N>)`);
  return device;
}
