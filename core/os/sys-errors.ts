/**
 * errno from the system-call addon -> berth's typed errors, with messages as clear as
 * mount(8)'s: each names the operation, the paths and devices involved, what the kernel said
 * and which call said it ("... (EBUSY from umount2)").
 *
 *   EBUSY                    -> InUse
 *   ENOENT                   -> NotFound
 *   EPERM / EACCES           -> Internal naming what was refused and the privilege it needs
 *   ENOSPC / ENOMEM / E*FILE -> ResourceExhausted
 *   EROFS / EXDEV            -> FailedPrecondition
 *   ENODEV / ENOTTY / EOPNOTSUPP -> Unsupported
 *   EINVAL                   -> Internal with the hint the caller gives for its operation
 *   anything else            -> Internal
 */
import { BerthError, type ErrorKind } from '../errors.js';
import { isSysCallError } from './sys.js';

export interface SysErrorContext {
  /** What berth was doing, naming paths and devices: "bind-mounting /a on /b". */
  readonly action: string;
  /** What EINVAL means for this operation (mount(8) prints the same kind of hint). */
  readonly einval?: string;
  /** Better words for other codes of this operation: { EBUSY: 'target is busy: ...' }. */
  readonly reasons?: Readonly<Partial<Record<string, string>>>;
  /** A different kind for a code of this operation: { EACCES: 'FailedPrecondition' }. */
  readonly kinds?: Readonly<Partial<Record<string, ErrorKind>>>;
}

const KIND: Readonly<Record<string, ErrorKind>> = {
  EBUSY: 'InUse',
  ENOENT: 'NotFound',
  ENOSPC: 'ResourceExhausted',
  ENOMEM: 'ResourceExhausted',
  EMFILE: 'ResourceExhausted',
  ENFILE: 'ResourceExhausted',
  EDQUOT: 'ResourceExhausted',
  EROFS: 'FailedPrecondition',
  EXDEV: 'FailedPrecondition',
  ENODEV: 'Unsupported',
  ENOTTY: 'Unsupported',
  EOPNOTSUPP: 'Unsupported',
};

const REASON: Readonly<Record<string, string>> = {
  EBUSY: 'busy',
  ENOENT: 'no such file or directory',
  EPERM: 'refused: operation not permitted (berth needs root with CAP_SYS_ADMIN in the host mount namespace)',
  EACCES: 'refused: permission denied (berth needs root with CAP_SYS_ADMIN in the host mount namespace)',
  ENOSPC: 'no space left (too many mounts or loop devices?)',
  ENOMEM: 'the kernel is out of memory',
  EMFILE: 'berth has too many open files',
  ENFILE: 'the system has too many open files',
  EROFS: 'read-only filesystem or device',
  ENODEV: 'not supported by this kernel (no such device or filesystem type)',
  ENOTTY: 'not supported for this file',
  EOPNOTSUPP: 'operation not supported',
  ENOTDIR: 'a directory was expected (or a file was bound onto a directory)',
  ENOTBLK: 'not a block device',
  ENXIO: 'no such device or address',
  ELOOP: 'too many symbolic links (or a symbolic link where none is allowed)',
  ENAMETOOLONG: 'path too long',
  EIO: 'I/O error on the device',
  EUCLEAN: 'the filesystem is corrupted (run its fsck)',
  EXDEV: 'not on the expected device',
  ETIMEDOUT: 'timed out',
};

/**
 * The typed error for a failed addon call; anything that is not one (already a BerthError,
 * or an unexpected throw) comes back as it is, or as Internal.
 * @example throw sysError(err, { action: `unmounting ${target}`, einval: 'not a mount point' });
 */
export function sysError(err: unknown, ctx: SysErrorContext): BerthError {
  if (err instanceof BerthError) return err;
  if (!isSysCallError(err)) {
    return new BerthError('Internal', `${ctx.action} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const code = err.code;
  const reason = ctx.reasons?.[code] ?? (code === 'EINVAL' ? `invalid argument${ctx.einval ? `: ${ctx.einval}` : ''}` : REASON[code] ?? err.message);
  const kind = ctx.kinds?.[code] ?? KIND[code] ?? 'Internal';
  return new BerthError(kind, `${ctx.action} failed: ${reason} (${code} from ${err.syscall})`, { cause: err });
}

/** The errno name of a failed addon call ("EBUSY"), or null for anything else. */
export function sysCode(err: unknown): string | null {
  return isSysCallError(err) ? err.code : null;
}
