/**
 * The core's public surface: the only module frontends and cli/ import from core/
 * (convention 10). Contracts, the store, the registry, the service and the input parsers.
 */
export * from './errors.js';
export * from './types.js';
export * from './service.js';
export * from './config.js';
export * from './observe.js';
export * from './user-input.js';
export * from './backend.js';

export type { Store } from './store/store.js';
export type { ClusterStatus, NodeStatus } from './catalog/nodes.js';
export { joinCluster, type ClusterNode } from './catalog/cluster.js';
export { agentSocketName, startFenceAgent, type RunningAgent } from './fence-agent.js';
export { openStore, type OpenStoreOptions } from './store/sqlite.js';
export { PRIVATE_DIR_MODE, tightenDirs, tightenLogFiles, tightenStateRoot, type ModeChange } from './private-state.js';
export { createBackends, type CreateBackendsOptions } from './registry.js';
export { createVolumeService, type CoreVolumeService, type VolumeServiceDeps } from './volume-service.js';
export type { ReconcileReport } from './reconcile.js';
export { EPHEMERAL_LABEL, isEphemeral } from './ephemeral.js';
export {
  formatSize, optionFieldNames, parseAccessMode, parseFsType, parseSize, parseVolumeMode, parseVolumeOptions, validateLabels,
  validateVolumeName,
} from './spec.js';
export { ALLOWED_MOUNT_FLAGS } from './targets.js';
export type { Logger } from './log.js';
export { createLogger, createSilentLogger } from './log.js';
export type { Exec } from './os/exec.js';
export { createExec, spawnSelfDetached } from './os/exec.js';
export { withTestHolds, HOLD_STEPS, type HoldPoint, type HoldStep } from './test-holds.js';
