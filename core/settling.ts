/**
 * Volumes whose records may not match the kernel, and settling them. An operation that
 * failed with ResourceExhausted (a full state disk) may have changed the kernel without
 * recording it (unmount: side effects first, records after). Such a volume is settled at
 * once, under the same lock (reconcile.ts settleVolume: the kernel goes back to what the
 * records say, as after a crash at that point). One that cannot be settled yet (its own
 * writes fail too) is remembered, and settled before the next operation on it, or its path,
 * is answered; a reconcile pass that gets through it forgets it.
 *
 * A retried mount (a committed reference for the same consumer) is answered with the path
 * on record only if the kernel still shows it (liveMount); else the volume is settled,
 * which re-establishes it.
 */
import { pathOf, type CoreDeps, type OpDeps } from './core-deps.js';
import { asBerthError } from './errors.js';
import { refIsLive, settleVolume, type ReconcileReport } from './reconcile.js';
import type { VolumeRow } from './store/store.js';

export class Settling {
  readonly #unsettled = new Set<string>();

  constructor(private readonly d: CoreDeps) {}

  /** Whether the volume must be settled before it is used. */
  pending(volumeId: string): boolean {
    return this.#unsettled.has(volumeId);
  }

  /** Settles the volume (the caller holds its lock: `od`); a failure keeps it pending and is thrown. */
  async settle(od: OpDeps, row: VolumeRow): Promise<void> {
    let changed: boolean;
    try {
      changed = await settleVolume(od, row);
      this.#unsettled.delete(row.id);
    } catch (err) {
      this.#unsettled.add(row.id);
      this.d.log.warn({ err, volume: row.name }, 'records and kernel may disagree; settled at the next operation on this volume');
      throw err;
    }
    if (changed) this.d.log.warn({ volume: row.name }, 'volume settled: the kernel was put back to match its records');
  }

  /** After a failed operation on the volume (its lock still held): settles it when the failure was a full disk. */
  async after(od: OpDeps, err: unknown, volumeId: string): Promise<void> {
    if (asBerthError(err).kind !== 'ResourceExhausted') return;
    const row = od.catalog.getVolume(volumeId);
    if (row) await this.settle(od, row).catch(() => undefined);
  }

  /**
   * Before a mount (the caller holds the lock): when `consumer` already holds a committed
   * reference whose mount the kernel no longer shows (a full disk, a hand-made umount),
   * re-establishes it. Returns the volume's current row.
   */
  async liveMount(od: OpDeps, row: VolumeRow, consumer: string): Promise<VolumeRow> {
    const mine = od.store.listMountRefs(row.id).find((r) => r.consumer === consumer && r.state === 'committed');
    if (!mine || (await refIsLive(od, row, mine))) return row;
    od.log.warn({ volume: row.name, consumer, path: mine.target ?? pathOf(od, row.id) }, 'mount recorded but not in the kernel: re-establishing');
    await this.settle(od, row);
    return od.catalog.getVolume(row.id) ?? row;
  }

  /** A reconcile pass settled every volume it did not skip or fail on. */
  reconciled(report: ReconcileReport): void {
    for (const id of this.#unsettled) {
      const row = this.d.catalog.getVolume(id);
      if (!row || (!report.skipped.includes(row.name) && !report.errors.some((e) => e.volume === row.name))) this.#unsettled.delete(id);
    }
  }
}
