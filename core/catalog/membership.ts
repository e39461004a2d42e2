/**
 * Node membership in etcd: each daemon writes its record (`nodes/<id>`: addresses, version,
 * backends, last seen; persistent, so a node that died still shows) and its presence key
 * (`alive/<id>`, bound to the session lease, so it goes when the node does). The presence key
 * is put again whenever the session grants a new lease, and the record's lastSeen is refreshed
 * every `refreshMs` while the node runs.
 */
import type { Logger } from '../log.js';
import type { EtcdConnection } from './etcd-client.js';
import { KEYS } from './etcd-keys.js';
import type { EtcdSession } from './etcd-session.js';
import type { EtcdView } from './etcd-view.js';
import type { NodeRecord, NodeStatus } from './nodes.js';

export interface MembershipOptions {
  readonly conn: EtcdConnection;
  readonly session: EtcdSession;
  readonly view: EtcdView;
  readonly log: Logger;
  /** This node's record, minus lastSeen (filled at each write). */
  readonly self: () => Omit<NodeRecord, 'lastSeen'>;
  readonly refreshMs?: number;
  readonly now?: () => Date;
}

export class Membership {
  readonly #o: MembershipOptions;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #onGranted = (lease: string) => void this.#announce(lease).catch((err: unknown) => this.#warn(err));

  constructor(o: MembershipOptions) {
    this.#o = o;
  }

  /** Registers this node (record + presence); Unavailable when etcd cannot be reached. */
  async start(): Promise<void> {
    this.#o.session.on('granted', this.#onGranted);
    const lease = await this.#o.session.leaseId();
    await this.#announce(lease);
    this.#timer = setInterval(() => void this.#writeRecord().catch((err: unknown) => this.#warn(err)), this.#o.refreshMs ?? 10_000);
    this.#timer.unref();
  }

  async #announce(lease: string): Promise<void> {
    if (this.#closed) return;
    const c = this.#o.conn;
    const id = this.#o.self().id;
    await c.call('registering this node', () =>
      c.client.if(c.prefix + KEYS.epoch, 'Version', '>', -1)
        .then(c.client.put(c.prefix + KEYS.node(id)).value(JSON.stringify(this.#record())), c.client.put(c.prefix + KEYS.alive(id)).value(lease).lease(lease))
        .commit());
    this.#o.log.info({ node: id, lease }, 'cluster: node registered');
  }

  async #writeRecord(force = false): Promise<void> {
    if ((this.#closed && !force) || this.#o.session.current === null) return;
    const c = this.#o.conn;
    await c.call('refreshing this node', () => c.client.put(c.prefix + KEYS.node(this.#o.self().id)).value(JSON.stringify(this.#record())).exec());
  }

  #record(): NodeRecord {
    return { ...this.#o.self(), lastSeen: (this.#o.now?.() ?? new Date()).toISOString() };
  }

  #warn(err: unknown): void {
    this.#o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster: could not refresh this node\'s record');
  }

  /** Every node the catalog knows, with whether its daemon and its fence agent are alive. */
  list(): NodeStatus[] {
    const v = this.#o.view;
    const attached = new Map<string, number>();
    for (const a of v.listAttachments()) attached.set(a.node, (attached.get(a.node) ?? 0) + 1);
    const leader = v.leaderQueue()[0]?.node ?? null;
    return v.listNodes().map((n) => ({
      ...n,
      alive: v.aliveLease(n.id) !== null,
      agentAlive: v.agentLease(n.id) !== null,
      attachedVolumes: attached.get(n.id) ?? 0,
      fence: v.fence(n.id),
      leader: n.id === leader,
    }));
  }

  /** Stops refreshing and takes this node's presence away (the record stays, with its last seen). */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.session.off('granted', this.#onGranted);
    if (this.#timer) clearInterval(this.#timer);
    await this.#writeRecord(true).catch(() => undefined);
    const c = this.#o.conn;
    await c.call('leaving the cluster', () => c.client.delete().key(c.prefix + KEYS.alive(this.#o.self().id)).exec()).catch(() => undefined);
  }
}
