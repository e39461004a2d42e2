/**
 * The daemon's session with etcd: one lease, kept alive every third of its TTL. Everything
 * the node holds in the cluster (its presence key, its lock keys) is bound to this lease, so
 * it all goes away when the node does.
 *
 * A restarted daemon takes its lease back (the id is kept in `leaseFile` under the state
 * root) when etcd still has it: a crash and restart within the TTL is not a node leaving the
 * cluster, and the locks the dead process held are its own again (its interrupted intents
 * are finished by the reconcile pass that follows, instead of waiting for the lease to expire).
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
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { EtcdConnection } from './etcd-client.js';

export interface SessionEvents {
  granted: [leaseId: string];
  lost: [leaseId: string];
  renewed: [];
}

export interface SessionOptions {
  readonly ttlMs: number;
  readonly log: Logger;
  /** Where the lease id is kept so a restarted daemon takes it back (node-local file). */
  readonly leaseFile?: string;
}

export class EtcdSession extends EventEmitter<SessionEvents> {
  readonly #conn: EtcdConnection;
  readonly #ttlMs: number;
  readonly #log: Logger;
  readonly #leaseFile: string | null;
  #id: string | null = null;
  #granting: Promise<string> | null = null;
  /** performance.now() when the last acknowledged keepalive (or the grant) was sent. */
  #renewedSentAt: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  #busy = false;
  #closed = false;

  constructor(conn: EtcdConnection, opts: SessionOptions) {
    super();
    this.#conn = conn;
    this.#ttlMs = opts.ttlMs;
    this.#log = opts.log;
    this.#leaseFile = opts.leaseFile ?? null;
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

  /**
   * Renews the lease now instead of at the next tick (or obtains one when there is none);
   * resolves either way, sinceRenewal() tells the outcome. For a node that fenced itself and
   * is asked for work: etcd may be back before the keepalive timer notices.
   */
  async renewNow(): Promise<void> {
    if (this.#closed) return;
    if (this.#id !== null) await this.#keepalive();
    // No lease, or etcd said it expired while the node was cut off: a new one.
    if (this.#id === null) await this.leaseId().catch(() => undefined);
  }

  /** The lease id: the current one, the one this node had before a restart, or a new one. Unavailable when etcd cannot be reached. */
  leaseId(): Promise<string> {
    if (this.#id !== null) return Promise.resolve(this.#id);
    this.#granting ??= this.#obtain().finally(() => {
      this.#granting = null;
    });
    return this.#granting;
  }

  async #obtain(): Promise<string> {
    const sentAt = performance.now();
    const leases = this.#conn.client.leaseClient;
    const previous = this.#readLeaseFile();
    let id: string | null = null;
    if (previous !== null) {
      // Still alive at etcd (a restart within the TTL): renew it at once and keep it.
      const ttl = await this.#conn.call('renewing the node lease', () => this.#keepaliveOnce(previous)).catch(() => 0);
      if (ttl > 0) id = previous;
    }
    let adopted = id !== null;
    if (id === null) {
      const res = await this.#conn.call('granting the node lease', () => leases.leaseGrant({ TTL: Math.max(2, Math.ceil(this.#ttlMs / 1000)) }));
      id = String(res.ID);
      adopted = false;
    }
    if (this.#closed) {
      await leases.leaseRevoke({ ID: id }).catch(() => undefined);
      throw this.#conn.unavailable('granting the node lease', new Error('the session is closed'));
    }
    this.#id = id;
    this.#renewedSentAt = sentAt;
    this.#writeLeaseFile(id);
    this.#schedule();
    this.#log.info({ lease: id, ttlMs: this.#ttlMs, adopted }, adopted ? 'cluster: node lease taken back after a restart' : 'cluster: node lease granted');
    this.emit('granted', id);
    return id;
  }

  /** One keepalive round trip; the TTL etcd gives the lease now (0 = expired). */
  async #keepaliveOnce(id: string): Promise<number> {
    const stream = await this.#conn.client.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<number>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no keepalive answer within ${Math.round(this.#ttlMs / 3)} ms`)), this.#ttlMs / 3);
        stream.on('data', (res: { TTL: string | number }) => (clearTimeout(t), resolve(Number(res.TTL))));
        stream.on('error', (err: Error) => (clearTimeout(t), reject(err)));
        stream.write({ ID: id });
      });
    } finally {
      stream.end();
    }
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.#keepalive(), Math.max(200, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  async #keepalive(): Promise<void> {
    const id = this.#id;
    if (id === null || this.#busy) return;
    this.#busy = true;
    const sentAt = performance.now();
    try {
      const ttl = await this.#keepaliveOnce(id);
      if (this.#id !== id) return;
      if (ttl <= 0) {
        this.#lose(id, new Error('etcd says the lease expired'));
        return;
      }
      this.#renewedSentAt = sentAt;
      this.emit('renewed');
    } catch (err) {
      if (this.#id === id && this.sinceRenewal() >= this.#ttlMs) this.#lose(id, err);
    } finally {
      this.#busy = false;
    }
  }

  #lose(id: string, err: unknown): void {
    this.#id = null;
    this.#renewedSentAt = null;
    this.#log.warn({ lease: id, err: err instanceof Error ? err.message : String(err) }, 'cluster: node lease lost');
    this.emit('lost', id);
  }

  #readLeaseFile(): string | null {
    if (this.#leaseFile === null) return null;
    try {
      const text = readFileSync(this.#leaseFile, 'utf8').trim();
      return /^\d+$/.test(text) ? text : null;
    } catch {
      return null;
    }
  }

  /** Best effort (a full state disk only costs the take-back after the next restart). */
  #writeLeaseFile(id: string): void {
    if (this.#leaseFile === null) return;
    try {
      writeFileSync(`${this.#leaseFile}.tmp`, `${id}\n`, { mode: 0o600 });
      renameSync(`${this.#leaseFile}.tmp`, this.#leaseFile);
    } catch (err) {
      this.#log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster: could not record the node lease; a restart will take a new one');
    }
  }

  /** Revokes the lease (the keys bound to it go at once) and stops renewing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const id = this.#id;
    this.#id = null;
    if (id !== null) {
      await Promise.race([
        this.#conn.client.leaseClient.leaseRevoke({ ID: id }),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ]).catch(() => undefined);
    }
    if (this.#leaseFile !== null) rmSync(this.#leaseFile, { force: true });
  }
}
