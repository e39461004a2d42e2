/**
 * The node guard (cluster mode): what a node's daemon does on its own so that no volume it
 * holds ever has a second writer, whatever the rest of the cluster does.
 *
 * - A fence order for this node: shut down every exclusive filesystem here, acknowledge it in
 *   the catalog (state done, by daemon), then release those volumes (their holds go: the
 *   fenced node never writes them again).
 * - A preemption of a volume this node holds: shut down this node's copy, release it here
 *   (its hold goes), and drop the request: the node that asked takes it.
 * - One of this node's holds removed by another node (a takeover after a fence): whatever
 *   still uses it here is shut down and released (reconcile.ts does the same at start-up).
 * - Self-fencing: when the session has not renewed the node lease for cluster.selfFenceMs
 *   (shorter than the TTL: before anyone may take over), every exclusive filesystem here is
 *   shut down and new mounts are refused (Unavailable) until the node is back, with a new
 *   lease; then the fenced volumes are released.
 * Every step is idempotent; what it did is kept for `berth status` (recent events).
 */
import { canAttach } from './backend.js';
import type { CatalogChange } from './catalog/catalog.js';
import { commit, localAttachment, RUNTIME, toBackendVolume, type CoreDeps, type OpDeps } from './core-deps.js';
import type { VolumeRow } from './store/store.js';
import { unavailable } from './errors.js';
import { fenceHere, isSingleNode, movedAway } from './fencing.js';
import { releaseMovedAway } from './mount-ops.js';

/** What `berth status` shows of the guard. */
export interface GuardStatus {
  /** The node fenced itself (lost etcd for cluster.selfFenceMs) and refuses new mounts until it is back. */
  readonly selfFenced: boolean;
  /** Volumes fenced or released here, newest first (at most 50). */
  readonly events: readonly GuardEvent[];
}

export interface GuardEvent {
  readonly at: string;
  readonly volume: string;
  /** fence-order | preempted | moved-away | self-fence */
  readonly why: string;
}

export interface GuardOptions {
  readonly d: CoreDeps;
  /** Takes the catalog locks of `keys` (the service's own way, so operations and the guard queue together). */
  readonly lock: (keys: readonly string[]) => Promise<{ od: OpDeps; release: () => Promise<void> }>;
  /** Milliseconds since the node lease was last renewed (Infinity without a lease). */
  readonly sinceRenewal: () => number;
  /** Renews the lease now (or obtains one); resolves either way. */
  readonly renewNow?: () => Promise<void>;
  readonly selfFenceMs: number;
  /** The etcd endpoints, for the refusal's message ("etcd at ... unreachable"). */
  readonly endpoints?: () => readonly string[];
  /** How often the self-fence deadline is checked. */
  readonly checkEveryMs?: number;
}

const volKey = (name: string) => `vol:${name}`;

export class NodeGuard {
  readonly #o: GuardOptions;
  readonly #events: GuardEvent[] = [];
  #selfFenced = false;
  /** A rejoin is queued (the deadline timer and the reconnect hook may both ask). */
  #rejoining = false;
  /** The self-fence is shutting filesystems down right now. */
  #fencing = false;
  /** Volumes shut down by the self-fence, released once the node is back. */
  readonly #selfFencedVolumes = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #off: (() => void) | null = null;
  /** One reaction at a time, in order: they take volume locks and must not pile up. */
  #queue: Promise<void> = Promise.resolve();

  constructor(o: GuardOptions) {
    this.#o = o;
  }

  start(): void {
    const d = this.#o.d;
    this.#off = d.catalog.onChange((c) => this.#onChange(c));
    this.#timer = setInterval(() => void this.#checkDeadline(), this.#o.checkEveryMs ?? 200);
    this.#timer.unref();
    // An order or a takeover that came while the daemon was down.
    this.#enqueue('start', () => this.#sweep());
  }

  stop(): void {
    this.#off?.();
    if (this.#timer) clearInterval(this.#timer);
  }

  status(): GuardStatus {
    return { selfFenced: this.#selfFenced, events: [...this.#events] };
  }

  /**
   * Refuses new work while the node is fenced by itself (no lease: it could not be sure it
   * holds anything). It first tries to renew the lease; when that works, the rejoin runs
   * first (what was shut down here is released), then the call goes on.
   */
  async checkServing(): Promise<void> {
    // etcd may be back before the keepalive timer noticed: ask now (bounded by the etcd timeout).
    if (this.#selfFenced && this.#o.sinceRenewal() >= this.#o.selfFenceMs) await this.#o.renewNow?.();
    if (this.#selfFenced && this.#o.sinceRenewal() < this.#o.selfFenceMs) {
      this.rejoined();
      await this.#queue;
    }
    if (this.#selfFenced) {
      const at = this.#o.endpoints?.().join(', ');
      throw unavailable(`this node lost the cluster${at ? ` (etcd at ${at})` : ''}: its lease could not be renewed within ${this.#o.selfFenceMs} ms, so it fenced its exclusive volumes; it takes new mounts again once its lease is renewed`);
    }
  }

  /**
   * The node renews its lease again after it fenced itself (a new lease after etcd came back,
   * or the old one when the outage was shorter than the TTL): the volumes it shut down are
   * released here (their consumers see EIO until they mount again), then it serves again.
   */
  rejoined(): void {
    if (this.#rejoining) return;
    this.#rejoining = true;
    this.#enqueue('rejoin', async () => {
      try {
        for (const id of [...this.#selfFencedVolumes]) {
          await this.#release(id, 'self-fence', true);
          this.#selfFencedVolumes.delete(id);
        }
        this.#selfFenced = false;
        this.#o.d.log.warn('node guard: the node lease is renewed again: serving mounts again');
        await this.#sweep();
      } finally {
        // Failed half way (etcd gone again): the next tick of the deadline timer tries again.
        this.#rejoining = false;
      }
    });
  }

  #onChange(c: CatalogChange): void {
    const d = this.#o.d;
    if (c.kind === 'fence' && c.node === d.nodeId && d.catalog.getFence(d.nodeId)?.state === 'ordered') {
      this.#enqueue('fence order', () => this.#executeOrder());
    } else if (c.kind === 'preempt' && localAttachment(d, c.volumeId)) {
      this.#enqueue('preempt', () => this.#preempted(c.volumeId));
    } else if (c.kind === 'attachment' && c.node === d.nodeId && c.deleted && this.#movedAway(c.volumeId)) {
      this.#enqueue('moved away', () => this.#release(c.volumeId, 'moved-away', false));
    } else if (c.kind === 'attachment' && c.node === d.nodeId && c.deleted && d.store.listMountRefs(c.volumeId).length === 0) {
      // Another node dropped this node's attachment (CSI ControllerUnpublish through another
      // node's controller only writes the record): its device here goes too. The row as it is
      // now: the volume may be deleted right after.
      const row = d.catalog.getVolume(c.volumeId);
      if (row) this.#enqueue('attachment dropped', () => this.#dropDevice(row));
    }
  }

  /**
   * Detaches this node's device of a volume it no longer holds and does not use (nothing to
   * do after this node's own detach: the backend says so). No volume lock: most of these events
   * are this node's own unmounts and unpublishes, and holding the lock would make the next
   * call on the volume fail as busy (CSI ABORTED). A new mount here claims the hold before it
   * attaches a device, so the re-check right before the detach sees it; the backend refuses
   * to detach a mounted volume.
   */
  async #dropDevice(row: VolumeRow): Promise<void> {
    const d = this.#o.d;
    const backend = d.backends.get(row.backend);
    if (!backend || !canAttach(backend)) return;
    const bv = toBackendVolume(row);
    // After this node's own unmount or detach (most of these events) nothing is left here.
    if (!(await backend.attachedHere(bv).catch(() => false))) return;
    if (localAttachment(d, row.id) || d.store.listMountRefs(row.id).length > 0) return;
    await backend.detach(bv).catch((err: unknown) =>
      d.log.warn({ err, volume: row.name }, 'node guard: could not detach a volume whose attachment another node dropped'));
    d.log.info({ volume: row.name }, 'node guard: detached a volume whose attachment another node dropped');
  }

  #movedAway(volumeId: string): boolean {
    const row = this.#o.d.catalog.getVolume(volumeId);
    return row !== null && movedAway(this.#o.d, row);
  }

  #enqueue(what: string, fn: () => Promise<void>): void {
    this.#queue = this.#queue.then(fn).catch((err: unknown) => this.#o.d.log.error({ err, what }, 'node guard: a reaction failed'));
  }

  /** What may have happened while no one was watching: an order for this node, preemptions, takeovers. */
  async #sweep(): Promise<void> {
    const d = this.#o.d;
    if (d.catalog.getFence(d.nodeId)?.state === 'ordered') await this.#executeOrder();
    for (const a of d.catalog.listAttachments()) {
      if (a.node === d.nodeId && d.catalog.getPreempt(a.volumeId)) await this.#preempted(a.volumeId);
    }
  }

  async #executeOrder(): Promise<void> {
    const d = this.#o.d;
    const order = d.catalog.getFence(d.nodeId);
    if (!order || order.state !== 'ordered') return;
    const ids = await fenceHere(d, 'fence order');
    try {
      await d.catalog.commit((w) => {
        w.expectFence(order);
        w.putFence({ ...order, state: 'done', doneBy: 'daemon', doneAt: d.now(), volumes: ids });
      });
    } catch (err) {
      // The agent acknowledged first, or the order was withdrawn: either way nothing to add.
      d.log.info({ err: err instanceof Error ? err.message : String(err) }, 'node guard: fence acknowledged elsewhere');
    }
    this.#note(ids.length ? ids : ['-'], 'fence-order');
    for (const row of d.catalog.listAttachments().filter((a) => a.node === d.nodeId)) {
      const vol = d.catalog.getVolume(row.volumeId);
      if (vol && isSingleNode(vol) && !row.readOnly) await this.#release(row.volumeId, 'fence-order', true);
    }
  }

  async #preempted(volumeId: string): Promise<void> {
    const d = this.#o.d;
    const ask = d.catalog.getPreempt(volumeId);
    if (!ask || !localAttachment(d, volumeId)) return;
    await fenceHere(d, `preempted by node "${ask.by}"`, new Set([volumeId]));
    await this.#release(volumeId, 'preempted', true);
    await d.catalog.commit((w) => w.deletePreempt(volumeId)).catch(() => undefined);
  }

  /**
   * Takes the volume off this node under its lock: a hold this node still has goes too
   * (`dropHold`), else only what the kernel and the node's records have.
   */
  async #release(volumeId: string, why: string, dropHold: boolean): Promise<void> {
    const d = this.#o.d;
    const row = d.catalog.getVolume(volumeId);
    if (!row) return;
    const { od, release } = await this.#o.lock([volKey(row.name)]);
    try {
      const fresh = od.catalog.getVolume(volumeId);
      if (!fresh) return;
      // A takeover seen by its event: by the time the lock is ours this node may have
      // released the volume itself, or claimed it again (a new mount): then nothing to undo.
      if (!dropHold && !movedAway(od, fresh)) return;
      // Shut down first (fenceHere did, or does now), then unbind, unmount, detach and drop the
      // references, each step tolerant: a device a container still holds open is detached by
      // the kernel when it lets go. This node's hold goes last (after a fence or a preemption).
      await releaseMovedAway(od, fresh);
      if (dropHold && localAttachment(od, volumeId)) await commit(od, (w) => w.deleteAttachment(volumeId, od.nodeId), RUNTIME);
      this.#note([fresh.name], why);
    } finally {
      await release();
    }
  }

  /** Self-fencing: the deadline passed without a renewed lease. */
  async #checkDeadline(): Promise<void> {
    const late = this.#o.sinceRenewal() >= this.#o.selfFenceMs;
    if (this.#selfFenced && !late && !this.#fencing) {
      // Renewed again: the lease survived a short outage (etcd keeps leases across its own
      // restart), so no new lease and no reconnect event says the node is back.
      this.rejoined();
      return;
    }
    if (this.#selfFenced || !late) return;
    this.#selfFenced = true;
    const d = this.#o.d;
    d.log.error({ sinceRenewalMs: Math.round(this.#o.sinceRenewal()), selfFenceMs: this.#o.selfFenceMs }, 'node guard: the node lease was not renewed in time: fencing this node\'s exclusive volumes and refusing new mounts');
    this.#fencing = true;
    try {
      const ids = await fenceHere(d, 'self-fence');
      for (const id of ids) this.#selfFencedVolumes.add(id);
      this.#note(ids.map((id) => d.catalog.getVolume(id)?.name ?? id), 'self-fence');
    } finally {
      this.#fencing = false;
    }
  }

  /** Records what others did on the guard's behalf (reconcile's moved-away releases) for `berth status`. */
  noted(volumes: readonly string[], why: string): void {
    if (volumes.length) this.#note(volumes, why);
  }

  #note(volumes: readonly string[], why: string): void {
    const at = this.#o.d.now();
    for (const volume of volumes) this.#events.unshift({ at, volume, why });
    this.#events.splice(50);
  }
}
