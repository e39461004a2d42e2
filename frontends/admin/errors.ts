/**
 * BerthError <-> HTTP for the admin REST API, both ways: the server renders every error
 * as {"error":{"kind","message","field"}} with a status chosen by kind, and the client
 * (client.ts) rebuilds the same BerthError from that body. This is the only file that
 * picks an admin HTTP status. It imports nothing but core/errors.ts so the FlexVolume
 * executable can load it through the client without server code.
 */
import { BerthError, ERROR_KINDS, type ErrorKind } from '../../core/errors.js';

export interface ErrorBody {
  readonly error: { readonly kind: ErrorKind; readonly message: string; readonly field?: string };
}

/** HTTP status for each kind; the `never` check makes a new kind a build error here. */
export function httpStatus(kind: ErrorKind): 400 | 404 | 409 | 416 | 423 | 500 | 501 | 503 | 507 {
  switch (kind) {
    case 'NotFound':
      return 404;
    case 'AlreadyExists':
      return 409;
    case 'InvalidArgument':
      return 400;
    case 'InUse':
      return 409;
    case 'FailedPrecondition':
      return 409;
    case 'Busy':
      return 423;
    case 'Unsupported':
      return 501;
    case 'OutOfRange':
      return 416;
    case 'ResourceExhausted':
      return 507;
    case 'Unavailable':
      return 503;
    case 'Internal':
      return 500;
    default: {
      const unreachable: never = kind;
      throw new Error(`unmapped error kind ${String(unreachable)}`);
    }
  }
}

/**
 * HTTP's own answer to a request body over the cap (frontends/body-limit.ts): the error in
 * the body is InvalidArgument naming `body`, the status says why before the body is read.
 */
export const BODY_TOO_LARGE_STATUS = 413;

/** The kind a bare status stands for when a body carries none (a proxy, a crash mid-response). */
export function kindForStatus(status: number): ErrorKind {
  switch (status) {
    case 400:
    case BODY_TOO_LARGE_STATUS:
      return 'InvalidArgument';
    case 401:
    case 403:
      return 'FailedPrecondition';
    case 404:
      return 'NotFound';
    case 409:
      return 'FailedPrecondition';
    case 416:
      return 'OutOfRange';
    case 423:
      return 'Busy';
    case 501:
      return 'Unsupported';
    case 507:
      return 'ResourceExhausted';
    case 503:
      return 'Unavailable';
    default:
      return 'Internal';
  }
}

/** Renders an error for the wire: Internal errors keep their message (the daemon logged the stack). */
export function toErrorBody(err: BerthError): ErrorBody {
  return { error: err.toJSON() };
}

/** Rebuilds the daemon's BerthError from a response; falls back on the status when the body is not ours. */
export function fromErrorResponse(status: number, body: unknown): BerthError {
  const e = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  if (typeof e === 'object' && e !== null) {
    const { kind, message, field } = e as { kind?: unknown; message?: unknown; field?: unknown };
    if (typeof kind === 'string' && (ERROR_KINDS as readonly string[]).includes(kind)) {
      return new BerthError(kind as ErrorKind, typeof message === 'string' ? message : `HTTP ${status}`, {
        field: typeof field === 'string' ? field : undefined,
      });
    }
  }
  const text = typeof body === 'string' && body ? `: ${body.slice(0, 200)}` : '';
  return new BerthError(kindForStatus(status), `admin API answered HTTP ${status}${text}`);
}
