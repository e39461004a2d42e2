/**
 * An in-memory copy of the volumes table, kept by the SQLite store (write-through), so
 * that the reads every frontend makes constantly cost a Map lookup instead of a query:
 * Docker calls Get several times per operation, kubelet polls, and a list of 10,000
 * volumes would otherwise build 10,000 rows from SQLite each time (~35-50 ms).
 *
 * The store owns the rules that keep it true (see sqlite.ts): it writes here only after
 * a statement succeeded, drops the copy when a transaction rolls back, and reloads it
 * when another connection committed (PRAGMA data_version). Rows are frozen: callers share them.
 */
import type { VolumePatch, VolumeRow } from './store.js';

/** SQLite's BINARY order for the ASCII names berth allows (ORDER BY name). */
const byName = (a: VolumeRow, b: VolumeRow) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export class VolumeCache {
  readonly #byId = new Map<string, VolumeRow>();
  readonly #idByName = new Map<string, string>();
  /** Every row, ordered by name. */
  #sorted: VolumeRow[] = [];

  /** Replaces the whole content (rows in any order). */
  load(rows: readonly VolumeRow[]): void {
    this.#byId.clear();
    this.#idByName.clear();
    for (const r of rows) {
      const row = freeze(r);
      this.#byId.set(row.id, row);
      this.#idByName.set(row.name, row.id);
    }
    this.#sorted = [...this.#byId.values()].sort(byName);
  }

  get(id: string): VolumeRow | null {
    return this.#byId.get(id) ?? null;
  }

  getByName(name: string): VolumeRow | null {
    const id = this.#idByName.get(name);
    return id === undefined ? null : (this.#byId.get(id) ?? null);
  }

  /** Ordered by name; the array is a copy, the rows are shared (frozen). */
  list(filter: { backend?: string; status?: string } = {}): VolumeRow[] {
    if (filter.backend === undefined && filter.status === undefined) return this.#sorted.slice();
    return this.#sorted.filter((r) => (filter.backend === undefined || r.backend === filter.backend) &&
      (filter.status === undefined || r.status === filter.status));
  }

  get size(): number {
    return this.#byId.size;
  }

  insert(r: VolumeRow): void {
    // A copy: the caller's objects (a request's labels) are not ours to freeze.
    const row = freeze({ ...r, labels: { ...r.labels }, options: { ...r.options } });
    this.#byId.set(row.id, row);
    this.#idByName.set(row.name, row.id);
    this.#sorted.splice(this.#position(row), 0, row);
  }

  patch(id: string, patch: VolumePatch): void {
    const old = this.#byId.get(id);
    if (!old) return;
    const row = freeze({
      ...old,
      ...(patch.status !== undefined ? { status: patch.status } : {}),
      ...(patch.sizeBytes !== undefined ? { sizeBytes: patch.sizeBytes } : {}),
    });
    this.#byId.set(id, row);
    this.#sorted[this.#position(old)] = row;
  }

  remove(id: string): void {
    const old = this.#byId.get(id);
    if (!old) return;
    this.#byId.delete(id);
    this.#idByName.delete(old.name);
    this.#sorted.splice(this.#position(old), 1);
  }

  /** Index of `row` in #sorted if present, else where it would go (binary search by name). */
  #position(row: VolumeRow): number {
    let lo = 0;
    let hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byName(this.#sorted[mid]!, row) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function freeze(r: VolumeRow): VolumeRow {
  Object.freeze(r.labels);
  Object.freeze(r.options);
  return Object.freeze(r);
}
