/**
 * KeyedMutex: one FIFO queue per key (the volume name), so operations on one volume run
 * one at a time while operations on different volumes run in parallel. Waiting is bounded:
 * after `waitMs` the waiter gets Busy instead of hanging a frontend forever; `wait: false`
 * gets Busy at once when the key is held (CSI answers ABORTED, the CO retries).
 */
import { busy } from './errors.js';

export type Release = () => void;

interface Waiter {
  grant: () => void;
  cancelled: boolean;
}

interface KeyState {
  held: boolean;
  queue: Waiter[];
}

export interface AcquireOptions {
  /** false: throw Busy at once if the key is held. Default true. */
  readonly wait?: boolean;
  /** Overrides the default wait limit. */
  readonly waitMs?: number;
}

/**
 * @example const m = new KeyedMutex(60_000); const release = await m.acquire('pgdata'); try { ... } finally { release(); }
 */
export class KeyedMutex {
  readonly #keys = new Map<string, KeyState>();
  readonly #waitMs: number;

  constructor(waitMs: number) {
    this.#waitMs = waitMs;
  }

  /** True while some caller holds `key` (for tests and diagnostics). */
  isHeld(key: string): boolean {
    return this.#keys.get(key)?.held ?? false;
  }

  /** Number of keys with a holder or waiters; 0 when idle (no leak of per-key state). */
  get size(): number {
    return this.#keys.size;
  }

  acquire(key: string, opts: AcquireOptions = {}): Promise<Release> {
    let state = this.#keys.get(key);
    if (!state) {
      state = { held: false, queue: [] };
      this.#keys.set(key, state);
    }
    if (!state.held) {
      state.held = true;
      return Promise.resolve(this.#releaser(key, state));
    }
    if (opts.wait === false) return Promise.reject(busy(`another operation on "${key}" is in progress`));
    const waitMs = opts.waitMs ?? this.#waitMs;
    const st = state;
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        cancelled: false,
        grant: () => {
          clearTimeout(timer);
          resolve(this.#releaser(key, st));
        },
      };
      const timer = setTimeout(() => {
        waiter.cancelled = true;
        reject(busy(`another operation on "${key}" is still running after ${waitMs} ms`));
      }, waitMs);
      st.queue.push(waiter);
    });
  }

  /** Runs fn while holding `key`. */
  async run<T>(key: string, fn: () => Promise<T>, opts: AcquireOptions = {}): Promise<T> {
    const release = await this.acquire(key, opts);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Holds several keys at once, taken in sorted order so two callers asking for the same
   * keys can never deadlock; on failure the keys already taken are released.
   */
  async acquireAll(keys: readonly string[], opts: AcquireOptions = {}): Promise<Release> {
    const sorted = [...new Set(keys)].sort();
    const releases: Release[] = [];
    try {
      for (const k of sorted) releases.push(await this.acquire(k, opts));
    } catch (err) {
      for (const r of releases.reverse()) r();
      throw err;
    }
    return () => {
      for (const r of releases.reverse()) r();
    };
  }

  #releaser(key: string, state: KeyState): Release {
    let done = false;
    return () => {
      if (done) return; // releasing twice must not hand the key to two waiters
      done = true;
      let next: Waiter | undefined;
      while ((next = state.queue.shift()) && next.cancelled);
      if (next) {
        next.grant(); // ownership passes directly: `held` stays true
      } else {
        state.held = false;
        if (this.#keys.get(key) === state) this.#keys.delete(key);
      }
    };
  }
}
