/**
 * The one place a BerthError becomes a Docker plugin error body {"Err": "..."}.
 * Docker shows Err to the user verbatim ("Error response from daemon: create v:
 * VolumeDriver.Create: <Err>"), so every message says what went wrong and what to do.
 * The switch is exhaustive: a new error kind breaks the build until it is mapped here.
 */
import { asBerthError, type BerthError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';

export type DockerErrorBody = { readonly Err: string };

/** The user-facing text for an error of each kind. */
export function dockerErrorMessage(err: BerthError): string {
  const msg = err.message;
  switch (err.kind) {
    case 'NotFound':
      return msg;
    case 'AlreadyExists':
      return `${msg} (pick another name, or create it again with the same options)`;
    case 'InvalidArgument':
      return `invalid argument: ${msg}`;
    case 'InUse':
      return `${msg} (stop the containers or other consumers using it first)`;
    case 'FailedPrecondition':
      return msg;
    case 'Busy':
      return `${msg} (another operation on this volume is running; try again)`;
    case 'Unsupported':
      return `not supported: ${msg}`;
    case 'OutOfRange':
      return `out of range: ${msg}`;
    case 'ResourceExhausted':
      return `no room: ${msg}`;
    case 'Unavailable':
      return `unavailable: ${msg} (try again once it is back)`;
    case 'Internal':
      return `internal error: ${msg} (see the berth daemon log)`;
    default: {
      const never: never = err.kind;
      return `unexpected error kind ${String(never)}: ${msg}`;
    }
  }
}

/**
 * Any thrown value -> {"Err": "..."}. Non-BerthErrors are Internal and logged once with
 * their stack; the others are expected outcomes and logged by the caller's op line.
 */
export function toDockerError(err: unknown, log?: Logger): DockerErrorBody {
  const e = asBerthError(err);
  if (e.kind === 'Internal' && log) {
    const cause = e.cause instanceof Error ? e.cause : e;
    log.error({ err: cause }, 'docker: internal error');
  }
  return { Err: dockerErrorMessage(e) };
}
