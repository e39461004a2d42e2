/**
 * The daemon's session with etcd: one lease, kept alive every third of its TTL. Everything
 * the node holds in the cluster (its presence key, its lock keys) is bound to this lease, so
 * it all goes away when the node does.
 *
 * The session also keeps the clock self-fencing needs: when the last keepalive that etcd
 * acknowledged was *sent*. etcd expires the lease no earlier than TTL after it processed that
 * keepalive, which was after it was sent; so "now - sentAt < TTL" proves the lease is still
 * alive at etcd, and a node that fences itself before that runs out is safe (issue 11).
 *
 * A lost lease (expired at etcd, or unrenewed for a whole TTL) is replaced by a new one on
 * the next use; listeners hear `lost` (drop what was bound to it) and `granted` (re-register).
 */
import { EventEmitter } from 'node:events';
import { EtcdLeaseInvalidError, type Lease } from 'etcd3';
import type { Logger } from '../log.js';
import type { EtcdConnection } from './etcd-client.js';

export interface SessionEvents {
  granted: [leaseId: string];
  lost: [leaseId: string];
  renewed: [];
}

export class EtcdSession extends EventEmitter<SessionEvents> {
  readonly #conn: EtcdConnection;
  readonly #ttlMs: number;
  readonly #log: Logger;
  #lease: Lease | null = null;
  #id: string | null = null;
  #granting: Promise<string> | null = null;
  /** performance.now() when the last acknowledged keepalive (or the grant) was sent. */
  #renewedSentAt: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(conn: EtcdConnection, opts: { ttlMs: number; log: Logger }) {
    super();
    this.#conn = conn;
    this.#ttlMs = opts.ttlMs;
    this.#log = opts.log;
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** The current lease id, or null when there is none (not granted yet, or lost). */
  get current(): string | null {
    return this.#id;
  }

  /** Milliseconds since the last acknowledged keepalive was sent; Infinity without a lease. */
  sinceRenewal(): number {
    return this.#id === null || this.#renewedSentAt === null ? Infinity : performance.now() - this.#renewedSentAt;
  }

  /** The lease id, granting a new lease when there is none; Unavailable when etcd cannot be reached. */
  leaseId(): Promise<string> {
    if (this.#id !== null) return Promise.resolve(this.#id);
    this.#granting ??= this.#grant().finally(() => {
      this.#granting = null;
    });
    return this.#granting;
  }

  async #grant(): Promise<string> {
    const sentAt = performance.now();
    const lease = this.#conn.client.lease(Math.max(1, Math.ceil(this.#ttlMs / 1000)), { autoKeepAlive: false });
    lease.on('lost', () => undefined); // handled where the calls fail; an unhandled 'lost' would be thrown
    const id = await this.#conn.call('granting the node lease', () => lease.grant());
    if (this.#closed) {
      await lease.revoke().catch(() => undefined);
      throw this.#conn.unavailable('granting the node lease', new Error('the session is closed'));
    }
    this.#lease = lease;
    this.#id = id;
    this.#renewedSentAt = sentAt;
    this.#schedule();
    this.#log.info({ lease: id, ttlMs: this.#ttlMs }, 'cluster: node lease granted');
    this.emit('granted', id);
    return id;
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.#keepalive(), Math.max(200, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  #busy = false;

  async #keepalive(): Promise<void> {
    const lease = this.#lease;
    const id = this.#id;
    if (!lease || id === null || this.#busy) return;
    this.#busy = true;
    const sentAt = performance.now();
    try {
      await withTimeout(lease.keepaliveOnce(), this.#ttlMs / 3);
      if (this.#id !== id) return;
      this.#renewedSentAt = sentAt;
      this.emit('renewed');
    } catch (err) {
      if (this.#id !== id) return;
      if (err instanceof EtcdLeaseInvalidError || this.sinceRenewal() >= this.#ttlMs) this.#lose(id, err);
    } finally {
      this.#busy = false;
    }
  }

  #lose(id: string, err: unknown): void {
    this.#lease?.release();
    this.#lease = null;
    this.#id = null;
    this.#renewedSentAt = null;
    this.#log.warn({ lease: id, err: err instanceof Error ? err.message : String(err) }, 'cluster: node lease lost');
    this.emit('lost', id);
  }

  /** Revokes the lease (best effort: the keys bound to it go at once) and stops renewing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const lease = this.#lease;
    this.#lease = null;
    this.#id = null;
    if (lease) await withTimeout(lease.revoke(), 2_000).catch(() => undefined);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${Math.round(ms)} ms`)), ms);
    p.then((v) => (clearTimeout(t), resolve(v)), (e: unknown) => (clearTimeout(t), reject(e)));
  });
}
