/**
 * Ephemeral volumes: volumes that live exactly as long as the mount reference they were made
 * for (CSI ephemeral inline volumes: made at NodePublish, gone after NodeUnpublish). The rule
 * is the core's, the frontend only asks for it (MountRequest.ephemeral):
 *
 * - one operation under the volume's lock creates the volume (marked with the label
 *   EPHEMERAL_LABEL, which no create request may set itself) and adds the reference, so no
 *   reconcile pass ever sees it created but unreferenced while the caller is still working;
 * - the unmount that drops its last reference removes it, under the same lock;
 * - reconcile removes every ephemeral volume that no reference holds. That is where a crash
 *   between create and mount, or between unmount and remove, ends up; the 'creating' and
 *   'deleting' intents of create and remove cover crashes inside those two. An ephemeral
 *   volume whose reference is still recorded is re-established like any other.
 *
 * Its reference is committed durably (an ordinary mount reference is runtime state, rebuilt
 * or dropped with the kernel's): after a power cut, losing it would remove the data with it.
 * Every function here assumes the caller holds the volume's lock.
 */
import { loadVolume, type OpDeps } from './core-deps.js';
import { createVolume, removeVolume, type CheckedCreate } from './create-ops.js';
import { failedPrecondition, invalidArgument } from './errors.js';
import { mountVolume } from './mount-ops.js';
import type { MountRequest, MountResponse } from './service.js';
import type { VolumeRow } from './store/store.js';
import type { Frontend, Volume } from './types.js';

/** The label that marks an ephemeral volume; set by the core only. */
export const EPHEMERAL_LABEL = 'berth.dev/ephemeral';

export const isEphemeral = (v: Pick<VolumeRow | Volume, 'labels'>): boolean => v.labels[EPHEMERAL_LABEL] === 'true';

/** Create requests may not set the marker: only an ephemeral mount makes ephemeral volumes. */
export function refuseEphemeralLabel(labels: Readonly<Record<string, string>>, field = 'labels'): void {
  if (Object.hasOwn(labels, EPHEMERAL_LABEL)) {
    throw invalidArgument(`${field}.${EPHEMERAL_LABEL}`, 'is set by berth on ephemeral volumes (made by their first mount, removed with their last unmount); it cannot be given');
  }
}

/** The create request of an ephemeral volume: the caller's checked spec, marked. */
export function ephemeralCreate(spec: CheckedCreate): CheckedCreate {
  if (spec.source) throw invalidArgument(spec.source.kind === 'snapshot' ? 'fromSnapshot' : 'fromVolume', 'an ephemeral volume starts empty');
  return { ...spec, labels: { ...spec.labels, [EPHEMERAL_LABEL]: 'true' } };
}

/**
 * The ephemeral volume `spec.name` with `req.consumer`'s reference: made now when missing (the
 * same spec again finds the one made before; another spec is AlreadyExists), then mounted.
 * A volume of that name that is not ephemeral is refused. When the mount fails, a volume
 * nothing references is removed again.
 */
export async function mountEphemeral(
  d: OpDeps,
  spec: CheckedCreate,
  req: MountRequest,
  frontend: Frontend,
  defaultBackend: string,
): Promise<MountResponse> {
  const existing = d.catalog.getVolumeByName(spec.name);
  if (existing && !isEphemeral(existing)) {
    throw failedPrecondition(`volume "${spec.name}" exists and is not an ephemeral volume; an ephemeral volume needs a name of its own`);
  }
  await createVolume(d, spec, defaultBackend);
  const row = d.catalog.getVolumeByName(spec.name)!;
  try {
    return await mountVolume(d, row, req, frontend, { durable: true });
  } catch (err) {
    await removeIfUnreferenced(d, row).catch((e: unknown) => d.log.warn({ err: e, volume: row.name }, 'removing an unused ephemeral volume failed; left for reconcile'));
    throw err;
  }
}

/**
 * Removes `row` when it is ephemeral and no reference holds it any more; returns its last
 * view when it did, else null.
 */
export async function removeIfUnreferenced(d: OpDeps, row: VolumeRow): Promise<Volume | null> {
  const fresh = d.catalog.getVolume(row.id);
  if (!fresh || !isEphemeral(fresh) || d.store.listMountRefs(fresh.id).length > 0) return null;
  const last = loadVolume(d, fresh);
  await removeVolume(d, fresh, true);
  d.log.info({ volume: fresh.name, id: fresh.id }, 'ephemeral volume removed: no reference holds it');
  return last;
}
