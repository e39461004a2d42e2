/**
 * The only file that picks a gRPC status code for the CSI frontend (convention 1).
 * Every BerthError kind maps to the code the CSI spec uses for that situation; anything
 * that is not a BerthError is Internal. The few answers the CSI spec requires that have
 * no BerthError kind (ABORTED for a pagination token berth did not issue) are built
 * here too, by name, so handlers never write a status code themselves.
 */
import { status } from '@grpc/grpc-js';
import { asBerthError, clip, MAX_MESSAGE_CHARS, truncate, type ErrorKind } from '../../core/index.js';

export interface CsiStatusError extends Error {
  readonly code: status;
  readonly details: string;
}

/**
 * The message travels in the grpc-message trailer: one of ~75 KB breaks the CO's whole
 * channel (every later call on it hangs), so it is bounded here whatever its origin.
 */
function statusError(code: status, details: string): CsiStatusError {
  const bounded = truncate(details, MAX_MESSAGE_CHARS);
  return Object.assign(new Error(bounded), { code, details: bounded });
}

export function codeForKind(kind: ErrorKind): status {
  switch (kind) {
    case 'NotFound':
      return status.NOT_FOUND;
    case 'AlreadyExists':
      return status.ALREADY_EXISTS;
    case 'InvalidArgument':
      return status.INVALID_ARGUMENT;
    case 'InUse': // DeleteVolume of a published volume, publish on a second node: spec says FAILED_PRECONDITION
      return status.FAILED_PRECONDITION;
    case 'FailedPrecondition':
      return status.FAILED_PRECONDITION;
    case 'Busy': // "an operation for this volume is already in progress"
      return status.ABORTED;
    case 'Unsupported': // except an unusable CreateVolume content source: controller.ts makes that InvalidArgument
      return status.UNIMPLEMENTED;
    case 'OutOfRange':
      return status.OUT_OF_RANGE;
    case 'ResourceExhausted':
      return status.RESOURCE_EXHAUSTED;
    case 'Unavailable': // the CO retries with backoff
      return status.UNAVAILABLE;
    case 'Internal':
      return status.INTERNAL;
    default: {
      const never: never = kind;
      return never;
    }
  }
}

function isStatusError(err: unknown): err is CsiStatusError {
  return err instanceof Error && typeof (err as Partial<CsiStatusError>).code === 'number' &&
    typeof (err as Partial<CsiStatusError>).details === 'string';
}

/** Any thrown value -> the gRPC error the handler answers with. */
export function toGrpcError(err: unknown): CsiStatusError {
  if (isStatusError(err)) return err.details.length > MAX_MESSAGE_CHARS ? statusError(err.code, err.details) : err;
  const e = asBerthError(err);
  return statusError(codeForKind(e.kind), e.message);
}

/** ListVolumes / ListSnapshots: "starting_token is not valid" is ABORTED in the spec. */
export function invalidStartingToken(token: string): CsiStatusError {
  return statusError(status.ABORTED, `starting_token: "${clip(token)}" was not issued by this plugin`);
}
