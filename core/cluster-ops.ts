/**
 * Cluster operations an operator asks for (cluster mode): fence and unfence a node, move a
 * volume to another node, and preempt a volume's holder. The rules of who may take what stay
 * in fencing.ts; this file writes the orders and waits for their answers.
 */
import { commit, localAttachment, RUNTIME, type CoreDeps, type OpDeps } from './core-deps.js';
import { failedPrecondition, inUse, notFound, unsupported } from './errors.js';
import { fenceHere } from './fencing.js';
import { releaseAll } from './mount-ops.js';
import type { VolumeRow } from './store/store.js';
import type { FenceRecord } from './types.js';

const FENCE_WAIT_MS = 30_000;

function requireCluster(d: CoreDeps): void {
  if (d.catalog.mode !== 'etcd') throw unsupported('single-node berth (embedded catalog) has no other node: fencing and moving volumes need cluster mode');
}

/** The node must be one the catalog knows. */
export function requireKnownNode(d: CoreDeps, node: string, field = 'node'): void {
  if (d.catalog.nodeLiveness(node) === null) {
    const known = [...new Set(d.catalog.listAttachments().map((a) => a.node))];
    throw notFound(`${field}: node "${node}" is not a member of the cluster${known.length ? ` (nodes holding volumes: ${known.join(', ')})` : ''}`);
  }
}

/** Resolves once `cond` holds (checked at every catalog change), or false after `ms`. */
export function waitFor(d: CoreDeps, cond: () => boolean, ms: number): Promise<boolean> {
  if (cond()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      off();
      resolve(cond());
    }, ms);
    const off = d.catalog.onChange(() => {
      if (!cond()) return;
      clearTimeout(timer);
      off();
      resolve(true);
    });
  });
}

/**
 * Fences `node`: orders its daemon or fence agent to shut down every exclusive filesystem
 * there and waits for the acknowledgement. A node with no live berth process is declared down
 * at once (like Kubernetes' out-of-service taint: the operator says it cannot write). This
 * node fences itself right here.
 */
export async function fenceNode(d: CoreDeps, node: string): Promise<FenceRecord> {
  requireCluster(d);
  requireKnownNode(d, node);
  let order = d.catalog.getFence(node);
  if (order?.state === 'done') return order;
  if (!order) {
    const fresh: FenceRecord = {
      node, state: 'ordered', reason: 'operator', orderedBy: d.nodeId, orderedAt: d.now(), doneBy: null, doneAt: null, volumes: [],
    };
    await d.catalog.commit((w) => w.putFence(fresh));
    order = fresh;
  }
  if (node === d.nodeId) {
    const ids = await fenceHere(d, 'fence order (this node)');
    const done: FenceRecord = { ...order, state: 'done', doneBy: 'daemon', doneAt: d.now(), volumes: ids };
    await d.catalog.commit((w) => (w.expectFence(order!), w.putFence(done)));
    return done;
  }
  const live = d.catalog.nodeLiveness(node)!;
  if (!live.alive && !live.agentAlive) {
    const declared: FenceRecord = { ...order, state: 'done', doneBy: 'declared', doneAt: d.now() };
    const o = order;
    await d.catalog.commit((w) => (w.expectFence(o), w.expectNodeDown(node), w.putFence(declared)));
    return declared;
  }
  await waitFor(d, () => d.catalog.getFence(node)?.state === 'done', FENCE_WAIT_MS);
  const now = d.catalog.getFence(node);
  if (!now) throw failedPrecondition(`the fence of node "${node}" was withdrawn (berth node unfence) while waiting`);
  return now;
}

/** Withdraws a node's fence: it may hold volumes again (what it held was released or taken over). */
export async function unfenceNode(d: CoreDeps, node: string): Promise<void> {
  requireCluster(d);
  requireKnownNode(d, node);
  await d.catalog.commit((w) => w.deleteFence(node));
}

/**
 * Moves a volume to `to`: released here (no consumer may still use it here), then held by
 * `to` (an explicit attachment, which `to` attaches and mounts for its first consumer).
 * Runs on the node that holds the volume, or on any node when nobody holds it.
 */
export async function moveVolume(d: OpDeps, row: VolumeRow, to: string): Promise<void> {
  requireCluster(d);
  requireKnownNode(d, to, 'to');
  const holders = d.catalog.listAttachments(row.id);
  const elsewhere = holders.find((a) => a.node !== d.nodeId && a.node !== to);
  if (elsewhere) throw failedPrecondition(`volume "${row.name}" is held by node "${elsewhere.node}": move it from there`);
  if (holders.some((a) => a.node === to)) return;
  if (localAttachment(d, row.id)) {
    const refs = d.store.listMountRefs(row.id);
    if (refs.length) throw inUse(`volume "${row.name}" is used here by ${refs.map((r) => r.consumer).join(', ')}; stop them first`);
    await releaseAll(d, row, undefined, true);
  }
  await commit(d, (w) => w.putAttachment({
    volumeId: row.id, node: to, device: null, path: null, readOnly: false, implicit: false, createdAt: d.now(),
  }));
}

/**
 * Asks the holder of `row` to give it up now (preemption): its daemon shuts its copy down and
 * releases it; if its daemon is down, its fence agent does. Resolves once the hold is gone or
 * the holder is fenced, false when `ms` passed first.
 */
export async function preempt(d: CoreDeps, row: VolumeRow, holder: string, ms: number): Promise<boolean> {
  requireCluster(d);
  await d.catalog.commit((w) => w.putPreempt({ volumeId: row.id, by: d.nodeId, holder, at: d.now() }), RUNTIME);
  return waitFor(d, () => !d.catalog.listAttachments(row.id).some((a) => a.node === holder) || d.catalog.getFence(holder)?.state === 'done', ms);
}
