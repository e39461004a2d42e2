/**
 * Which backend instance serves a create request. Explicit wins; then the existing
 * volume's (idempotent retries) and the source's (a restore or clone lives beside its
 * source); then the default backend when it can serve the request; otherwise the first
 * configured backend, in config order, that can (so `docker volume create -o fs=xfs`
 * on the embedded defaults lands on the `loop` instance instead of failing on `dir`).
 */
import type { Backend } from './backend.js';
import { invalidArgument } from './errors.js';
import type { FsType, VolumeMode } from './types.js';

export interface BackendWants {
  readonly explicit?: string | undefined;
  readonly existing?: string | undefined;
  readonly source?: string | undefined;
  readonly fsType?: FsType | undefined;
  readonly volumeMode?: VolumeMode | undefined;
}

const canServe = (b: Backend, w: BackendWants): boolean =>
  (w.fsType === undefined || b.capabilities.fsTypes.includes(w.fsType)) && (w.volumeMode !== 'block' || b.capabilities.block);

export function chooseBackend(backends: ReadonlyMap<string, Backend>, defaultBackend: string, w: BackendWants): Backend {
  const named = w.explicit ?? w.existing ?? w.source;
  if (named !== undefined) {
    const b = backends.get(named);
    if (!b) throw invalidArgument('backend', `unknown backend "${named}" (configured: ${[...backends.keys()].join(', ') || 'none'})`);
    return b;
  }
  const dflt = backends.get(defaultBackend);
  if (dflt && canServe(dflt, w)) return dflt;
  for (const b of backends.values()) if (canServe(b, w)) return b;
  if (dflt) return dflt; // its validateCreate names what it cannot do
  throw invalidArgument('backend', `default backend "${defaultBackend}" is not configured`);
}
