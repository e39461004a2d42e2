/**
 * Exclusive attach and fencing (cluster mode): the one place that decides whether a node may
 * use a single-node volume another node holds. Frontends only map the refusal to their
 * protocol (docs/architecture.md, "Exclusive attach, fencing and failover").
 *
 * A volume whose access mode allows one node (ReadWriteOnce, ReadWriteOncePod) has at most
 * one node holding it: an attachment in the catalog, claimed before the kernel is touched.
 * Another node may take it only when
 *   1. released: the holder's attachment is gone;
 *   2. fenced: the holder's fence is done (its daemon or fence agent shut down every exclusive
 *      filesystem there and said so), or an operator fenced a node on which nothing of berth
 *      is alive any more (declared down);
 *   3. down by construction: every berth process of the holder lost its lease, and the node
 *      runs a fence agent: each process shuts down its exclusive filesystems when it has not
 *      renewed its lease for cluster.selfFenceMs, shorter than the lease TTL, so whatever
 *      still runs there cannot write.
 * The daemon's lease expiring alone is never enough: a daemon killed with kill -9 leaves its
 * containers writing; its fence agent's lease says the node lives on.
 *
 * The takeover is one catalog commit: it removes the holder's attachment, claims the volume,
 * and compares what it relied on (the fence record as read, or no live lease), so a node that
 * came back in between makes the commit fail instead of having two holders.
 */
import type { CatalogWriter } from './catalog/catalog.js';
import { clustered, localAttachment, toBackendVolume, type CoreDeps } from './core-deps.js';
import { canFence } from './backend.js';
import { BerthError } from './errors.js';
import type { AttachmentRow, VolumeRow } from './store/store.js';

/** The label a volume created with `preempt` carries (set by the core only). */
export const PREEMPT_LABEL = 'berth.dev/preempt';

export const isPreemptible = (row: Pick<VolumeRow, 'labels'>): boolean => row.labels[PREEMPT_LABEL] === 'true';

/** Access modes that allow one node. */
export const isSingleNode = (row: Pick<VolumeRow, 'accessMode'>): boolean =>
  row.accessMode === 'ReadWriteOnce' || row.accessMode === 'ReadWriteOncePod';

/** Refused because another node holds a single-node volume: carries who, for preemption. */
export class HeldElsewhere extends BerthError {
  constructor(message: string, readonly volumeId: string, readonly holder: string, readonly movable: boolean) {
    super('FailedPrecondition', message);
  }
}

export type Takeover =
  | { readonly ok: true; readonly how: 'fenced' | 'declared' | 'down'; readonly expect: (w: CatalogWriter) => void }
  | { readonly ok: false; readonly why: string };

/** Whether `holder`'s hold may be taken away now (rules 2 and 3 above), and what the commit must compare. */
export function takeover(d: CoreDeps, holder: string): Takeover {
  const fence = d.catalog.getFence(holder);
  if (fence?.state === 'done') return { ok: true, how: 'fenced', expect: (w) => w.expectFence(fence) };
  const live = d.catalog.nodeLiveness(holder);
  if (live === null) {
    // Never registered: nothing there mounted it through berth yet, but the hold is a
    // publish for that node (CSI ControllerPublish, an explicit attach), which its berth
    // will act on when it starts: only a detach for that node gives it up.
    return { ok: false, why: `it is attached (published) to node "${holder}", where berth has not run yet; detach it from "${holder}" first` };
  }
  if (!live.alive && !live.agentAlive) {
    if (live.hasAgent) return { ok: true, how: 'down', expect: (w) => w.expectNodeDown(holder) };
    if (fence?.state === 'ordered') {
      return { ok: true, how: 'declared', expect: (w) => (w.expectFence(fence), w.expectNodeDown(holder)) };
    }
    return { ok: false, why: `node "${holder}" does not answer and runs no fence agent, so it may still write; declare it down with "berth node fence ${holder}"` };
  }
  const who = live.alive ? 'its daemon is alive' : 'its daemon is down but its fence agent is alive (its containers may still write)';
  if (fence?.state === 'ordered') return { ok: false, why: `node "${holder}" is being fenced (ordered ${fence.orderedAt}); ${who}, and it has not confirmed yet` };
  return { ok: false, why: `${who}; it moves when "${holder}" releases it, when "${holder}" is fenced ("berth node fence ${holder}"), or with preempt` };
}

/** Other nodes holding a single-node volume that `node` wants (none for multi-node volumes). */
export function otherHolders(d: CoreDeps, row: VolumeRow, node: string): AttachmentRow[] {
  if (!isSingleNode(row)) return [];
  return d.catalog.listAttachments(row.id).filter((a) => a.node !== node);
}

/**
 * Before `node` claims `row`: every other holder must be one that may be taken over. Returns
 * the writes that expire those holds (to run in the claim's commit); throws HeldElsewhere
 * naming the holder otherwise. Single-node mode: the one rule of old (one node).
 */
export function claimChecks(d: CoreDeps, row: VolumeRow, node: string): ((w: CatalogWriter) => void) | null {
  const holders = otherHolders(d, row, node);
  if (holders.length === 0) return null;
  if (!clustered(d)) {
    const other = holders[0]!;
    throw new HeldElsewhere(`volume "${row.name}" is ${row.accessMode} and attached to node "${other.node}"; detach it there first`, row.id, other.node, false);
  }
  const writes: Array<(w: CatalogWriter) => void> = [];
  for (const h of holders) {
    const t = takeover(d, h.node);
    if (!t.ok) {
      // Preemption needs a berth there to answer: not for a node that never ran one.
      const movable = d.catalog.nodeLiveness(h.node) !== null;
      throw new HeldElsewhere(`volume "${row.name}" is ${row.accessMode} and held by node "${h.node}": ${t.why}`, row.id, h.node, movable);
    }
    d.log.warn({ volume: row.name, holder: h.node, how: t.how, by: node }, 'taking over a volume from a node that can no longer write to it');
    writes.push((w) => {
      t.expect(w);
      w.deleteAttachment(row.id, h.node);
    });
  }
  return (w) => {
    for (const write of writes) write(w);
  };
}

/** What fencing needs: the catalog, the backends, this node's id (the daemon's deps, or the fence agent's). */
export type FenceDeps = Pick<CoreDeps, 'catalog' | 'backends' | 'log' | 'nodeId'>;

/** Volumes this node holds exclusively for writing (what a fence must stop). */
export function exclusiveHere(d: FenceDeps, only?: ReadonlySet<string>): VolumeRow[] {
  const out: VolumeRow[] = [];
  for (const a of d.catalog.listAttachments()) {
    if (a.node !== d.nodeId || a.readOnly || (only && !only.has(a.volumeId))) continue;
    const row = d.catalog.getVolume(a.volumeId);
    if (row && isSingleNode(row)) out.push(row);
  }
  return out;
}

/**
 * Shuts down this node's copies of its exclusive volumes (all, or `only` these), so nothing
 * here writes to them again. Returns the ids it shut down. Needs no lock and no etcd: it is
 * what a node does when it cannot reach the cluster. A backend that cannot fence (dir) is
 * skipped and logged: such a volume moves only when released.
 */
export async function fenceHere(d: FenceDeps, why: string, only?: ReadonlySet<string>): Promise<string[]> {
  const done: string[] = [];
  for (const row of exclusiveHere(d, only)) {
    const backend = d.backends.get(row.backend);
    if (!backend || !canFence(backend)) {
      d.log.error({ volume: row.name, backend: row.backend, why }, 'cannot fence this volume: its backend has no way to stop writes here');
      continue;
    }
    try {
      if (await backend.fence(toBackendVolume(row))) done.push(row.id);
    } catch (err) {
      d.log.error({ err, volume: row.name, why }, 'fencing a volume failed');
    }
  }
  if (done.length) d.log.warn({ volumes: done, why }, 'fenced: filesystems shut down on this node');
  return done;
}

/**
 * Whether this node still uses the volume (it has references to it) while its hold in the
 * catalog is gone because it was taken away: another node holds it now, or this node is
 * fenced (then the taker may have used and released it since). A hold gone without either
 * is this node's own doing (an unmount whose local record failed after the catalog's went
 * through), which settling.ts puts back as recorded.
 */
export function movedAway(d: CoreDeps, row: VolumeRow): boolean {
  if (!clustered(d) || !isSingleNode(row)) return false;
  if (localAttachment(d, row.id) || d.store.listMountRefs(row.id).length === 0) return false;
  return d.catalog.listAttachments(row.id).some((a) => a.node !== d.nodeId) || d.catalog.getFence(d.nodeId)?.state === 'done';
}
