/**
 * One record per service operation. The volume service emits it once per call (it also
 * writes the structured log line); the daemon feeds it to Prometheus metrics.
 */
import type { ErrorKind } from './errors.js';
import type { Frontend } from './types.js';

export interface OpRecord {
  readonly frontend: Frontend;
  /** Service method: "create", "mount", "remove", ... */
  readonly op: string;
  /** Volume or snapshot name/id the call was about, when there is one. */
  readonly volume: string | null;
  readonly durationMs: number;
  readonly outcome: 'ok' | ErrorKind;
}

export type OpObserver = (rec: OpRecord) => void;
