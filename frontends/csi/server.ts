/**
 * Turns berth's promise handlers into the transport's unary methods through ONE wrapper that
 * checks the request against the CSI size limits before anything else (limits.ts), logs
 * every call (method, volume, duration, gRPC code; secrets never logged, the volume id
 * clipped) and maps every thrown error through errors.ts.
 */
import { status } from '@grpc/grpc-js';
import { clip, type Logger } from '../../core/index.js';
import { toGrpcError } from './errors.js';
import { checkRequestLimits } from './limits.js';
import type { UnaryMethod } from './transport.js';

type AnyHandler = (req: never) => Promise<unknown>;

/** RPCs a CO polls (kubelet, sidecars): their successes log at debug so info stays readable. */
const POLLED = /^(Probe|GetPlugin|NodeGet|ControllerGet|GetCapacity|List|ValidateVolumeCapabilities)/;

/** The volume (or snapshot) a request is about, for the log line. */
function subjectOf(req: Record<string, unknown>): string | undefined {
  for (const k of ['volume_id', 'source_volume_id', 'snapshot_id', 'name'] as const) {
    const v = req[k];
    if (typeof v === 'string' && v) return clip(v);
  }
  return undefined;
}

/** A copy of the request without secrets (any field named "secrets", at any depth), for debug logs. */
export function stripSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripSecrets);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = k === 'secrets' ? '***stripped***' : stripSecrets(v);
  return out;
}

/**
 * @example server.add(services.Node, wrapHandlers('Node', createNodeHandlers(deps), log))
 */
export function wrapHandlers(service: string, handlers: Record<string, AnyHandler>, log: Logger): Record<string, UnaryMethod> {
  const impl: Record<string, UnaryMethod> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    const polled = POLLED.test(method);
    impl[method] = (req, callback) => {
      const started = performance.now();
      const volume = subjectOf(req);
      const done = (code: status, err: unknown, ended: number) => {
        const durationMs = Math.round((ended - started) * 1000) / 1000;
        const line = { service, method, volume, durationMs, code: status[code] };
        if (code === status.OK) (polled ? log.debug(line, 'csi call') : log.info(line, 'csi call'));
        else if (code === status.INTERNAL || code === status.UNKNOWN) log.error({ ...line, err }, 'csi call failed');
        else log.info({ ...line, error: err instanceof Error ? err.message : String(err) }, 'csi call failed');
      };
      const run = async () => {
        checkRequestLimits(req);
        // The copy without secrets is made only for a debug line that is written.
        if (log.isLevelEnabled('debug')) log.debug({ method, request: stripSecrets(req) }, 'csi request');
        return handler(req as never);
      };
      // The answer first, then its log line: the line's cost is not the caller's wait.
      run().then(
        (res) => {
          const ended = performance.now();
          callback(null, res);
          done(status.OK, undefined, ended);
        },
        (err: unknown) => {
          const ended = performance.now();
          const e = toGrpcError(err);
          callback(e);
          done(e.code, err, ended);
        },
      );
    };
  }
  return impl;
}
