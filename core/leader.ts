/**
 * Cluster-wide work (cluster mode), done by the one node that leads (core/catalog/election.ts):
 *
 * 1. Holds of fenced nodes expire. A node whose fence is done (its daemon or fence agent shut
 *    its exclusive filesystems down, or an operator declared it down) cannot write to its
 *    single-node volumes any more; its attachments of them (the catalog's record that it
 *    holds and mounts them) are removed, so the volumes show free and any node may take them
 *    at once. The commit compares what it relied on, exactly as a takeover does
 *    (fencing.ts: the fence record as read, or no live lease). A node that is only down by
 *    construction (rule 3 of fencing.ts) keeps its holds until a node claims the volume:
 *    nobody declared it down. Multi-node volumes keep their attachments: a fence does not
 *    stop them. This node's own holds are its node guard's (it has the kernel).
 * 2. Half-finished operations are collected. A 'creating' or 'deleting' volume on shared
 *    storage whose lock nobody holds was left by a node that died mid-operation (a live
 *    operation holds the volume's lock, bound to its node's lease, until it is done). It is
 *    rolled back or forward as reconcile does (create-ops.ts finishInterrupted), once no node
 *    that may still use it holds it. The same for snapshots on shared storage. A node-local
 *    backend's intent waits for its node: only it reaches the data.
 *
 * Every write is made under the volume's lock and the leadership token: a node that stopped
 * leading (lost etcd, resigned) has its commit refused by etcd. The sweep runs when the node
 * becomes leader, when a fence or a node's liveness changes, and every `everyMs`; it stops at
 * once (between volumes) when the node stops leading.
 */
import type { CatalogLock } from './catalog/catalog.js';
import { commit, RUNTIME, underLocks, type CoreDeps, type OpDeps } from './core-deps.js';
import { finishInterrupted } from './create-ops.js';
import { isBerthError } from './errors.js';
import { isSingleNode, takeover } from './fencing.js';
import { finishInterruptedSnapshot } from './snapshot-ops.js';

/** What the node's election offers the core (core/catalog/election.ts). */
export interface Leadership {
  /** This node leads now. */
  isLeader(): boolean;
  /** The node that leads, as this node sees it (null: none right now). */
  leader(): string | null;
  /** A lock that fences commits made as leader; null when not leading. */
  token(): CatalogLock | null;
  on(event: 'change', cb: (leading: boolean) => void): unknown;
  off(event: 'change', cb: (leading: boolean) => void): unknown;
}

export interface SweepReport {
  /** Holds of fenced nodes removed, as "volume@node". */
  readonly expired: string[];
  /** Interrupted creates rolled back / removes rolled forward on shared storage (names; snapshots as "snapshot <name>"). */
  readonly finished: string[];
  /** Left for a later pass: busy (an operation holds it), or still held by a node that may use it. */
  readonly skipped: string[];
  readonly errors: { readonly volume: string; readonly message: string }[];
}

export interface ClusterLeaderOptions {
  readonly d: CoreDeps;
  readonly leadership: Leadership;
  /** Period of the sweep while leading (default 10 s); changes in the catalog trigger it sooner. */
  readonly everyMs?: number;
}

const INTENT = new Set(['creating', 'deleting']);

export class ClusterLeader {
  readonly #o: ClusterLeaderOptions;
  #running: Promise<SweepReport | null> | null = null;
  #again = false;
  #stopped = true;
  #timer: NodeJS.Timeout | null = null;
  #offCatalog: (() => void) | null = null;
  readonly #onLeadership = (leading: boolean) => {
    if (leading) this.#kick();
  };

  /** @example const leader = new ClusterLeader({ d, leadership: cluster.election }); leader.start(); */
  constructor(o: ClusterLeaderOptions) {
    this.#o = o;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#o.leadership.on('change', this.#onLeadership);
    this.#offCatalog = this.#o.d.catalog.onChange((c) => {
      if (c.kind === 'fence' || c.kind === 'liveness') this.#kick();
    });
    this.#timer = setInterval(() => this.#kick(), this.#o.everyMs ?? 10_000);
    this.#timer.unref();
    this.#kick();
  }

  /** Stops sweeping (a running pass stops at its next volume); resolves when it has. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#o.leadership.off('change', this.#onLeadership);
    this.#offCatalog?.();
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  isLeader(): boolean {
    return this.#o.leadership.isLeader();
  }

  leader(): string | null {
    return this.#o.leadership.leader();
  }

  /** One pass now if this node leads (null if not); a call during a pass gets a pass that starts after it. */
  async sweep(): Promise<SweepReport | null> {
    while (this.#running) await this.#running.catch(() => undefined);
    const run = this.#sweepOnce().finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }

  /** Runs a pass soon; passes asked for while one runs become one more pass. */
  #kick(): void {
    if (this.#stopped || !this.#o.leadership.isLeader()) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    void this.sweep()
      .catch((err: unknown) => {
        // etcd away: the node stops leading within cluster.selfFenceMs anyway; not an error of ours.
        if (isBerthError(err) && err.kind === 'Unavailable') this.#o.d.log.warn({ err: err.message }, 'leader: the cluster sweep could not reach etcd');
        else this.#o.d.log.error({ err }, 'leader: the cluster sweep failed');
      })
      .finally(() => {
        if (!this.#again) return;
        this.#again = false;
        this.#kick();
      });
  }

  async #sweepOnce(): Promise<SweepReport | null> {
    const { d, leadership } = this.#o;
    if (!leadership.isLeader()) return null;
    const r: SweepReport = { expired: [], finished: [], skipped: [], errors: [] };
    await d.catalog.fresh();
    const leading = () => !this.#stopped && leadership.isLeader();

    for (const a of d.catalog.listAttachments()) {
      if (!leading()) break;
      if (a.node === d.nodeId) continue;
      const vol = d.catalog.getVolume(a.volumeId);
      if (!vol || !isSingleNode(vol) || !fenced(d, a.node)) continue;
      await this.#underLock(r, `vol:${vol.name}`, vol.name, async (od) => {
        const row = od.catalog.getVolume(vol.id);
        const t = takeover(od, a.node);
        if (!row || !od.catalog.listAttachments(row.id).some((x) => x.node === a.node) || !t.ok || t.how === 'down') return;
        await commit(od, (w) => {
          t.expect(w);
          w.deleteAttachment(row.id, a.node);
        }, RUNTIME);
        r.expired.push(`${row.name}@${a.node}`);
        d.log.warn({ volume: row.name, node: a.node, how: t.how }, 'leader: a fenced node\'s hold expired; the volume is free to take');
      });
    }

    for (const vol of d.catalog.listVolumes()) {
      if (!leading()) break;
      if (vol.node !== null || !INTENT.has(vol.status) || !d.backends.has(vol.backend)) continue;
      await this.#underLock(r, `vol:${vol.name}`, vol.name, async (od) => {
        const row = od.catalog.getVolume(vol.id);
        if (!row || row.node !== null || !INTENT.has(row.status)) return;
        // A node that may still use it (alive, or not fenced) keeps it until it lets go.
        const holders = od.catalog.listAttachments(row.id).filter((x) => x.node !== od.nodeId && !takeover(od, x.node).ok);
        if (holders.length) {
          r.skipped.push(row.name);
          return;
        }
        await finishInterrupted(od, row);
        r.finished.push(row.name);
        d.log.warn({ volume: row.name, was: row.status }, `leader: finished a ${row.status === 'creating' ? 'create' : 'remove'} that a node left half done`);
      });
    }

    for (const snap of d.catalog.listSnapshots()) {
      if (!leading()) break;
      if (snap.status === 'ready' || d.backends.get(snap.backend)?.capabilities.scope !== 'global') continue;
      const what = `snapshot ${snap.name}`;
      await this.#underLock(r, `snap:${snap.name}`, what, async (od) => {
        const now = od.catalog.getSnapshot(snap.id);
        if (!now || now.status === 'ready') return;
        await finishInterruptedSnapshot(od, now);
        r.finished.push(what);
      });
    }

    if (r.expired.length + r.finished.length + r.errors.length) d.log.info({ op: 'leader-sweep', ...r }, 'leader: cluster sweep done');
    return r;
  }

  /** Runs fn under the key's lock (skipped when an operation holds it) and the leadership token. */
  async #underLock(r: SweepReport, key: string, what: string, fn: (od: OpDeps) => Promise<void>): Promise<void> {
    const { d, leadership } = this.#o;
    const token = leadership.token();
    if (!token) return;
    let lock: CatalogLock;
    try {
      lock = await d.catalog.lock(key, { waitMs: 0 });
    } catch (err) {
      if (isBerthError(err) && err.kind === 'Busy') r.skipped.push(what);
      else r.errors.push({ volume: what, message: err instanceof Error ? err.message : String(err) });
      return;
    }
    try {
      await fn(underLocks(d, [lock, token]));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      r.errors.push({ volume: what, message });
      d.log.error({ err, volume: what }, `leader: ${what}: ${message}`);
    } finally {
      await lock.release();
    }
  }
}

/** A node whose fence is done, or ordered for a node with nothing of berth alive (fencing.ts rules 2). */
function fenced(d: CoreDeps, node: string): boolean {
  const t = takeover(d, node);
  return t.ok && t.how !== 'down';
}
