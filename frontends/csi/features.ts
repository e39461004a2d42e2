/**
 * What this plugin advertises, derived from what the configured backends declare, so
 * berth never advertises a capability no backend can deliver ("advertise only what
 * works"). Identity, Controller and Node capabilities all come from here.
 */
import type { BackendInfo } from '../../core/index.js';

export interface Features {
  readonly snapshots: boolean;
  readonly clones: boolean;
  /** The best expansion any backend offers. */
  readonly expansion: 'none' | 'offline' | 'online';
  readonly block: boolean;
}

export function featuresOf(backends: readonly BackendInfo[]): Features {
  const caps = backends.map((b) => b.capabilities);
  const expansion = caps.some((c) => c.expansion === 'online')
    ? 'online'
    : caps.some((c) => c.expansion === 'offline')
      ? 'offline'
      : 'none';
  return {
    snapshots: caps.some((c) => c.snapshots),
    clones: caps.some((c) => c.clones),
    expansion,
    block: caps.some((c) => c.block),
  };
}
