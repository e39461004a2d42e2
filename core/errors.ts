/**
 * The closed set of errors the core and the backends raise. Every frontend maps
 * `BerthError.kind` to its own protocol in exactly one file (frontends/<p>/errors.ts)
 * with an exhaustive switch, so adding a kind breaks the build until every protocol maps it.
 */
import { clip, truncate } from './user-input.js';

export const ERROR_KINDS = [
  'NotFound', // the volume / snapshot / backend / consumer does not exist
  'AlreadyExists', // the name exists with different parameters
  'InvalidArgument', // a request field is malformed; `field` names it
  'InUse', // refused because the volume is mounted / attached / has dependants
  'FailedPrecondition', // the object is not in the state the operation needs
  'Busy', // another operation holds the volume (only when the caller asked not to wait)
  'Unsupported', // the backend or frontend cannot do this at all
  'OutOfRange', // a size or count is outside what the backend can deliver
  'ResourceExhausted', // no room: a full pool, filesystem or state root (ENOSPC, SQLITE_FULL), no free loop device
  'Unavailable', // a service berth depends on cannot be reached now (the cluster catalog); retry later
  'Internal', // a bug or an unexpected OS failure; logged with its stack
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

/**
 * Longest error message and field name kept. Messages embed user input and travel in
 * fields of bounded size (a gRPC status message is an HTTP/2 trailer): whatever a caller
 * builds, an error stays a few KB. Embedding points clip user strings much shorter (clip()).
 */
export const MAX_MESSAGE_CHARS = 2048;
const MAX_FIELD_CHARS = 512;

export interface BerthErrorOptions {
  /** The request field that was wrong, for InvalidArgument (e.g. "size", "name", "opts.fs"). */
  field?: string;
  cause?: unknown;
}

export class BerthError extends Error {
  readonly kind: ErrorKind;
  readonly field: string | undefined;

  constructor(kind: ErrorKind, message: string, opts: BerthErrorOptions = {}) {
    super(truncate(message, MAX_MESSAGE_CHARS), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BerthError';
    this.kind = kind;
    this.field = opts.field === undefined ? undefined : clip(opts.field, MAX_FIELD_CHARS);
  }

  toJSON(): { kind: ErrorKind; message: string; field?: string } {
    return this.field === undefined
      ? { kind: this.kind, message: this.message }
      : { kind: this.kind, message: this.message, field: this.field };
  }
}

export const isBerthError = (err: unknown): err is BerthError => err instanceof BerthError;

/**
 * The same error about a field under another name: how a frontend's user spelled a field the
 * core names its own way (`backend` -> `opts.backend`), the message's "<field>: " prefix
 * too. Anything else is returned unchanged.
 * @example throw renameErrorField(err, { backend: 'opts.backend' });
 */
export function renameErrorField(err: unknown, names: Readonly<Record<string, string>>): unknown {
  if (!(err instanceof BerthError) || err.field === undefined || !Object.hasOwn(names, err.field)) return err;
  const to = names[err.field]!;
  const prefix = `${err.field}: `;
  const message = err.message.startsWith(prefix) ? `${to}: ${err.message.slice(prefix.length)}` : err.message;
  return new BerthError(err.kind, message, { field: to, ...(err.cause !== undefined ? { cause: err.cause } : {}) });
}

/**
 * Wraps anything that is not a BerthError as Internal, keeping the original as cause; a
 * failure that comes down to a full filesystem is ResourceExhausted instead (see noSpace).
 */
export function asBerthError(err: unknown): BerthError {
  if (err instanceof BerthError && err.kind !== 'Internal') return err;
  const full = noSpace(err);
  if (full !== null) return new BerthError('ResourceExhausted', withPath(err instanceof Error ? err.message : String(err), full), { cause: err });
  if (err instanceof BerthError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BerthError('Internal', message, { cause: err });
}

/** errno codes for "the filesystem has no room" and "the quota is used up". */
const NO_SPACE_CODES = new Set(['ENOSPC', 'EDQUOT']);
/** The same said by a command on stderr (mkfs, cp, losetup) or by SQLite. */
const NO_SPACE_TEXT = /No space left on device|Disk quota exceeded|database or disk is full/i;

/**
 * Whether `err` (or an error in its cause chain) says the filesystem is full: an errno
 * ENOSPC / EDQUOT (fs calls), SQLITE_FULL, or a command that printed "No space left on
 * device". Returns what is known of where: the path the failing call named, or '' when
 * the message is all there is. null: not a full-disk failure.
 * @example if (noSpace(err) !== null) throw resourceExhausted(...);
 */
export function noSpace(err: unknown): string | null {
  let e: unknown = err;
  for (let depth = 0; depth < 8 && e instanceof Error; depth++) {
    const { code, path } = e as NodeJS.ErrnoException;
    if ((code !== undefined && NO_SPACE_CODES.has(code)) || code === 'SQLITE_FULL') return typeof path === 'string' ? path : '';
    if (NO_SPACE_TEXT.test(e.message)) return '';
    e = e.cause;
  }
  return null;
}

/** The message, naming `path` when it does not already. */
function withPath(message: string, path: string): string {
  return path === '' || message.includes(path) ? message : `${message} (${path})`;
}

export const notFound = (message: string) => new BerthError('NotFound', message);
export const alreadyExists = (message: string) => new BerthError('AlreadyExists', message);
export const invalidArgument = (field: string, message: string) =>
  new BerthError('InvalidArgument', `${field}: ${message}`, { field });
export const inUse = (message: string) => new BerthError('InUse', message);
export const failedPrecondition = (message: string) => new BerthError('FailedPrecondition', message);
export const busy = (message: string) => new BerthError('Busy', message);
export const unsupported = (message: string) => new BerthError('Unsupported', message);
export const outOfRange = (field: string, message: string) =>
  new BerthError('OutOfRange', `${field}: ${message}`, { field });
export const resourceExhausted = (message: string) => new BerthError('ResourceExhausted', message);
export const unavailable = (message: string, cause?: unknown) => new BerthError('Unavailable', message, { cause });
export const internal = (message: string, cause?: unknown) => new BerthError('Internal', message, { cause });
