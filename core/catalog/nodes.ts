/**
 * Node membership records: what each daemon says about itself in the catalog. The record is
 * persistent (a node that died still shows, with when it was last seen); whether the node is
 * alive is a separate key bound to its lease.
 */

export interface NodeRecord {
  readonly id: string;
  /** Where operators and other nodes reach it (admin TCP, Docker TCP, the host's addresses). */
  readonly addresses: readonly string[];
  readonly version: string;
  /** Backend instances configured there, with whether each is shared. */
  readonly backends: readonly { readonly name: string; readonly driver: string; readonly shared: boolean }[];
  readonly startedAt: string;
  /** RFC 3339; refreshed while the node runs. */
  readonly lastSeen: string;
}

/** A node as `berth node ls` shows it. */
export interface NodeStatus extends NodeRecord {
  /** The daemon's lease is alive. */
  readonly alive: boolean;
  /** The node's fence agent's lease is alive. */
  readonly agentAlive: boolean;
  /** Volumes with an attachment on this node. */
  readonly attachedVolumes: number;
}
