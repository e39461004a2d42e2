/**
 * CSI topology for berth: one segment, `topology.<driver>/node = <berth node id>`.
 *
 * - Every node reports its segment in NodeGetInfo, and the plugin always advertises
 *   VOLUME_ACCESSIBILITY_CONSTRAINTS (identity.ts): once a controller advertises it,
 *   Kubernetes' external-provisioner needs topology keys on every node a pod can land on,
 *   so whether a node has node-local backends must not change what it reports.
 * - A volume of a node-local backend is reachable from its home node only: its
 *   accessible_topology is that node's segment (Volume.node in cluster mode; this node for a
 *   single node, which only knows its own volumes).
 * - A shared backend's volume is reachable from every node: it carries no accessible_topology,
 *   which the spec defines as "equally accessible from all nodes" (external-provisioner then
 *   gives the PersistentVolume no node affinity, and kube-scheduler places its pods anywhere).
 * - CreateVolume's accessibility_requirements become the core's placement
 *   (CreateVolumeRequest.nodes, wantedNodes below): a node-local volume is made only on a
 *   node the CO wants it on; elsewhere CreateVolume is RESOURCE_EXHAUSTED ("unable to provision
 *   in accessible_topology"), so that the provisioner on that node (external-provisioner
 *   --node-deployment) makes it, or the CO picks another node.
 */
import type { BackendInfo, Volume } from '../../core/index.js';
import type { CreateVolumeRequest, Topology } from './proto.js';

/** What every service handler needs to know about this plugin instance. */
export interface CsiIdentity {
  readonly driverName: string;
  readonly nodeId: string;
  /** Topology segment key: "topology.<driverName>/node". */
  readonly topologyKey: string;
}

export const topologyKeyFor = (driverName: string): string => `topology.${driverName}/node`;

/** The segment of `node` (default: this node). */
export function nodeTopology(id: CsiIdentity, node: string = id.nodeId): Topology {
  return { segments: { [id.topologyKey]: node } };
}

/** Where `vol` can be used: its home node, or (empty) every node. */
export function volumeTopology(vol: Volume, backend: BackendInfo | undefined, id: CsiIdentity): Topology[] {
  if (vol.node !== null) return [nodeTopology(id, vol.node)];
  // No home recorded: a shared backend's volume (every node), or a single node's own volume.
  const local = !backend || backend.capabilities.scope === 'local';
  return local ? [nodeTopology(id)] : [];
}

/**
 * The nodes CreateVolume's accessibility requirements want the volume on, most wanted first;
 * undefined when any node will do. A term without berth's key does not name a node.
 * - `preferred[0]`, when it names a node, is the CO's choice: in Kubernetes the node the pod
 *   was scheduled to (delayed binding), or the node external-provisioner picked to spread
 *   immediate volumes. A node-local volume made on any other node would strand that pod (the
 *   spec lets an SP fall back to another requisite term; for a volume that lives on one node
 *   that fallback is the wrong answer), so it is then the only node wanted.
 * - Otherwise the requisite terms: the volume must be reachable from one of them.
 */
export function wantedNodes(req: CreateVolumeRequest['accessibility_requirements'], id: CsiIdentity): string[] | undefined {
  const first = req?.preferred?.[0]?.segments?.[id.topologyKey];
  if (first !== undefined) return [first];
  const requisite = req?.requisite ?? [];
  if (requisite.length === 0) return undefined;
  const nodes: string[] = [];
  for (const term of requisite) {
    const node = term.segments?.[id.topologyKey];
    if (node === undefined) return undefined; // a term any node satisfies
    if (!nodes.includes(node)) nodes.push(node);
  }
  return nodes;
}

/**
 * The node GetCapacity's accessible_topology names, or null when it names none (or this one):
 * another node's segment can only reach shared backends from here.
 */
export function otherNodeOf(t: Topology | null | undefined, id: CsiIdentity): string | null {
  const node = t?.segments?.[id.topologyKey];
  return node === undefined || node === id.nodeId ? null : node;
}
