/**
 * Leader election (cluster mode): one node at a time does the cluster-wide work (core/leader.ts).
 *
 * The algorithm is etcd's own (client/v3/concurrency.Election): each candidate puts one key,
 * `leader/<lease>` with its node id as value, bound to its node's session lease; the key with
 * the lowest create revision leads; the others wait for it to go. It goes when its node
 * resigns (the daemon stops: the key is deleted, the next candidate leads at once) or when the
 * node's lease expires (killed, or cut from etcd: the next one leads after the TTL).
 *
 * Why not the etcd3 package's Election: its Campaign always grants a lease of its own and
 * reports a lost one only once that lease has expired at etcd, which is when another node may
 * already lead. Bound to the session lease, leadership has the clock self-fencing already
 * trusts (EtcdSession.sinceRenewal: "now - sentAt < TTL" proves the key is still there), so:
 * - `isLeader()` turns false as soon as the lease has gone unrenewed for `stopAfterMs`
 *   (cluster.selfFenceMs, shorter than the TTL): a leader cut from etcd stops before anyone
 *   else can be elected, and leads again if its lease (so its key) survived the outage;
 * - `token()` is a CatalogLock on the candidate key: a commit made with it compares the key's
 *   create revision, so a deposed leader's late write fails and writes nothing.
 * Watching needs no stream of its own: the catalog's view sees the `leader/` keys.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { EtcdConnection } from './etcd-client.js';
import type { EtcdLock } from './etcd.js';
import { KEYS } from './etcd-keys.js';
import type { EtcdSession } from './etcd-session.js';
import type { EtcdView } from './etcd-view.js';

export interface ElectionOptions {
  readonly conn: EtcdConnection;
  readonly session: EtcdSession;
  readonly view: EtcdView;
  readonly nodeId: string;
  readonly log: Logger;
  /** Stop leading when the lease has not been renewed for this long (cluster.selfFenceMs). */
  readonly stopAfterMs: number;
  /** How often the renewal clock is checked (default 200 ms). */
  readonly checkEveryMs?: number;
}

interface Entry {
  readonly rel: string;
  readonly full: string;
  readonly leaseId: string;
  readonly createRevision: number;
  /** The view has shown the key: its absence from now on means it was deleted. */
  seen: boolean;
}

export class LeaderElection extends EventEmitter<{ change: [leading: boolean] }> {
  readonly #o: ElectionOptions;
  #entry: Entry | null = null;
  #elected = false;
  /** What `change` last reported. */
  #leading = false;
  #started = false;
  #closed = false;
  #campaigning: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #offView: (() => void) | null = null;
  readonly #onGranted = () => this.#campaign();
  readonly #onLost = (leaseId: string) => {
    if (this.#entry?.leaseId !== leaseId) return;
    this.#entry = null; // the key went with the lease
    this.#check();
    this.#campaign(); // asks the session for a new lease: the node is back as soon as etcd is
  };

  constructor(o: ElectionOptions) {
    super();
    this.#o = o;
  }

  /**
   * Enters the election (and again after every new lease) until resign().
   * @example const election = new LeaderElection({ conn, session, view, nodeId, log, stopAfterMs }); election.start();
   */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#o.session.on('granted', this.#onGranted);
    this.#o.session.on('lost', this.#onLost);
    this.#offView = this.#o.view.onChange((c) => {
      if (c.kind === 'leader') this.#check();
    });
    this.#timer = setInterval(() => this.#report(), this.#o.checkEveryMs ?? 200);
    this.#timer.unref();
    this.#campaign();
  }

  /** This node leads now: elected, with the same lease, renewed within stopAfterMs. */
  isLeader(): boolean {
    const e = this.#entry;
    return !this.#closed && this.#elected && e !== null && this.#o.session.current === e.leaseId &&
      this.#o.session.sinceRenewal() < this.#o.stopAfterMs;
  }

  /** The node that leads, as the catalog's view shows it (null: none right now). */
  leader(): string | null {
    return this.#o.view.leaderQueue()[0]?.node ?? null;
  }

  /** A lock to pass to commits made as leader (they fail once the leadership is lost); null when not leading. */
  token(): EtcdLock | null {
    const e = this.#entry;
    if (!e || !this.isLeader()) return null;
    return { key: 'leader', full: e.full, createRevision: e.createRevision, leaseId: e.leaseId, release: async () => undefined };
  }

  /** Leaves the election: the key is deleted, so the next candidate leads at once. Never throws. */
  async resign(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.session.off('granted', this.#onGranted);
    this.#o.session.off('lost', this.#onLost);
    this.#offView?.();
    if (this.#timer) clearInterval(this.#timer);
    const e = this.#entry;
    this.#entry = null;
    this.#elected = false;
    this.#report();
    await this.#campaigning?.catch(() => undefined);
    const left = this.#entry ?? e;
    if (left) {
      const c = this.#o.conn;
      await c.call('resigning as leader', () => c.client.delete().key(left.full).exec()).catch((err: unknown) => {
        this.#o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster: could not resign as leader; the key goes with the node lease');
      });
    }
  }

  /** Puts this node's candidate key (retrying while etcd cannot be reached); one attempt at a time. */
  #campaign(): void {
    if (this.#closed || this.#campaigning) return;
    this.#campaigning = (async () => {
      for (let delay = 200; !this.#closed; delay = Math.min(delay * 2, 2_000)) {
        try {
          await this.#enter();
          return;
        } catch (err) {
          this.#o.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'cluster: could not enter the leader election; retrying');
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
    })().finally(() => {
      this.#campaigning = null;
      // A lease lost while entering: enter again with the next one.
      if (!this.#closed && this.#entry === null && this.#o.session.current !== null) this.#campaign();
    });
  }

  async #enter(): Promise<void> {
    const leaseId = await this.#o.session.leaseId();
    if (this.#entry?.leaseId === leaseId || this.#closed) return;
    const c = this.#o.conn;
    const rel = KEYS.leaderEntry(leaseId);
    const full = c.prefix + rel;
    const res = await c.call('entering the leader election', () =>
      c.client.if(full, 'Create', '==', 0)
        .then(c.client.put(full).value(this.#o.nodeId).lease(leaseId))
        .else(c.client.get(full))
        .commit());
    const createRevision = res.succeeded ? Number(res.header.revision) : Number(res.responses[0]!.response_range!.kvs[0]!.create_revision);
    // Recorded even when resigning meanwhile: resign() deletes it.
    this.#entry = { rel, full, leaseId, createRevision, seen: false };
    if (this.#closed) return;
    await this.#o.view.reached(createRevision, 5_000);
    this.#check();
  }

  /** Whether our key is the oldest candidate the view shows (the view has everything up to our key). */
  #check(): void {
    const e = this.#entry;
    if (e) {
      const queue = this.#o.view.leaderQueue();
      const mine = queue.some((q) => q.key === e.rel);
      if (mine) e.seen = true;
      if (!mine && e.seen) {
        // Deleted (the lease expired, or someone removed it): enter again.
        this.#entry = null;
        this.#elected = false;
        this.#report();
        this.#campaign();
        return;
      }
      this.#elected = mine && this.#o.view.revision >= e.createRevision && queue[0]!.key === e.rel;
    } else {
      this.#elected = false;
    }
    this.#report();
  }

  #report(): void {
    const now = this.isLeader();
    if (now === this.#leading) return;
    this.#leading = now;
    const lease = this.#o.session.current;
    if (now) this.#o.log.info({ node: this.#o.nodeId, lease }, 'cluster: this node leads cluster-wide work');
    else this.#o.log.warn({ node: this.#o.nodeId, lease, sinceRenewalMs: Math.round(this.#o.session.sinceRenewal()) }, 'cluster: this node no longer leads');
    this.emit('change', now);
  }
}
