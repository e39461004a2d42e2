/**
 * FlexVolume replies and the one place a BerthError becomes one. kubelet parses stdout and
 * stderr together as exactly one JSON value (flexvolume.md §2-3): only "Success" succeeds,
 * "Not supported" makes it use its own fallback, anything else fails the operation and
 * shows `message` to the user. Exit 0 for Success / Not supported, 1 for Failure (§8.2).
 */
import { BerthError, isBerthError, type ErrorKind } from '../../core/errors.js';

export interface FlexCapabilities {
  readonly attach: boolean;
  readonly selinuxRelabel: boolean;
  readonly supportsMetrics: boolean;
  readonly fsGroup: boolean;
  readonly requiresFSResize: boolean;
}

export type FlexReply =
  | { readonly status: 'Success'; readonly message?: string; readonly device?: string; readonly attached?: boolean; readonly capabilities?: FlexCapabilities }
  | { readonly status: 'Not supported'; readonly message?: string }
  | { readonly status: 'Failure'; readonly message: string };

export const success = (fields: { message?: string; device?: string; attached?: boolean; capabilities?: FlexCapabilities } = {}): FlexReply => ({
  status: 'Success',
  ...fields,
});

export const notSupported = (message?: string): FlexReply =>
  message === undefined ? { status: 'Not supported' } : { status: 'Not supported', message };

export const failure = (message: string): FlexReply => ({ status: 'Failure', message });

export const exitCodeOf = (reply: FlexReply): number => (reply.status === 'Failure' ? 1 : 0);

/** What a person reading `kubectl describe pod` should do about each kind of error. */
function hintFor(kind: ErrorKind): string {
  switch (kind) {
    case 'NotFound':
      return 'not found';
    case 'AlreadyExists':
      return 'already exists with different parameters';
    case 'InvalidArgument': // the message names the option or argument
      return 'invalid argument';
    case 'InUse':
      return 'in use';
    case 'FailedPrecondition':
      return 'not in the right state';
    case 'Busy':
      return 'busy with another operation, will retry';
    case 'Unsupported':
      return 'not supported by the backend';
    case 'OutOfRange':
      return 'size out of range';
    case 'ResourceExhausted':
      return 'backend out of space or devices';
    case 'Unavailable':
      return 'the cluster catalog is unavailable, will retry';
    case 'Internal':
      return 'internal error (see the berth daemon log)';
    default: {
      const never: never = kind;
      return String(never);
    }
  }
}

const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'EPERM', 'ENOTSOCK', 'ECONNRESET', 'EPIPE']);

/** The errno-style code of a connection error, looking through `cause` chains. */
function connectionCode(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/** Any thrown value -> a Failure reply; never a stack trace. */
export function toFlexFailure(err: unknown, socket: string): FlexReply {
  const code = connectionCode(err);
  if (code !== null) {
    return failure(`berth daemon not reachable at ${socket} (${code}): is \`berth serve\` running, and is the socket in the driver's berth.json (or BERTH_SOCKET) right?`);
  }
  if (isBerthError(err)) return failure(`${hintFor(err.kind)}: ${err.message}`);
  const message = err instanceof Error ? err.message : String(err);
  return failure(`internal error in the berth FlexVolume driver: ${message}`);
}

export { BerthError };
