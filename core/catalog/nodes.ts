/**
 * Node membership records: what each daemon says about itself in the catalog. The record is
 * persistent (a node that died still shows, with when it was last seen); whether the node is
 * alive is a separate key bound to its lease. The shapes are public (core/types.ts).
 */
export type { ClusterBaseStatus, ClusterStatus, NodeRecord, NodeStatus } from '../types.js';
