/**
 * Attach / detach / mount / unmount for one volume. Every function here assumes the
 * caller holds the volume's lock (volume-service.ts takes it: the process mutex and, in
 * cluster mode, the catalog lock that fences every write) and re-reads records itself.
 *
 * Where things are recorded: mount references are this node's facts (the LocalStore);
 * attachments are cluster facts (the Catalog). A node that uses a volume holds an
 * attachment with its device and the path the volume is mounted at there: made implicitly
 * by the first mount and taken away by the last unmount, or made explicitly (ControllerPublish,
 * `berth volume attach`) and kept.
 *
 * Durability pattern (convention 8): a mount reference is inserted as 'pending' before any
 * side effect and set 'committed' after the last one, together with the attachment (one
 * SQLite transaction embedded; the etcd commit, then the local one, in cluster mode); a
 * failure undoes what this call did and deletes the pending row; a crash leaves the pending
 * row, which reconcile rolls back. In cluster mode a new implicit attachment is claimed in
 * the catalog before the kernel is touched, so other nodes see the holder at once; a claim
 * with nothing behind it is released by reconcile like any implicit attachment without references.
 *
 * Mount references, mounted paths and implicit attachments record kernel state that a
 * power cut wipes (mounts, loop devices), so they are committed as runtime commits
 * (`RUNTIME`, no fsync; see TxOptions): they survive kill -9, and after a reboot nothing is
 * left in the kernel for a lost record to leak. Explicit attachments (ControllerPublish,
 * `berth volume attach`) are decisions a CO made: those stay durable.
 */
import { canAttach, canFence, type Backend } from './backend.js';
import {
  backendOf, clustered, commit, loadVolume, localAttachment, requireHere, RUNTIME, toBackendVolume, type OpDeps,
} from './core-deps.js';
import { BerthError, failedPrecondition, invalidArgument, inUse } from './errors.js';
import { claimChecks } from './fencing.js';
import type { MountRequest, MountResponse } from './service.js';
import type { AttachmentRow, VolumeRow } from './store/store.js';
import { checkTarget, isWithin } from './target-policy.js';
import { bindTarget, parseMountFlags, targetRecord, unbindTarget } from './targets.js';
import type { Frontend } from './types.js';

/** A "csi-stage:" reference is the node-global staging mount, not a workload (ReadWriteOncePod). */
const isStageConsumer = (consumer: string) => consumer.startsWith('csi-stage:');

function mustBeReady(row: VolumeRow): void {
  if (row.status !== 'ready') throw failedPrecondition(`volume "${row.name}" is ${row.status}, not ready`);
}

/**
 * Records an attachment to `node` and, for this node on an attachable backend, makes the
 * backend attach. Existing attachment: returned as is (an explicit request turns an
 * implicit attachment explicit, so the last unmount no longer detaches it).
 */
export async function attachVolume(
  d: OpDeps,
  row: VolumeRow,
  req: { node: string; readOnly: boolean; implicit: boolean },
): Promise<{ attachment: AttachmentRow; created: boolean }> {
  mustBeReady(row);
  // ReadWriteOnce / ReadWriteOncePod: one node (fencing.ts decides when another may take over).
  const expire = claimChecks(d, row, req.node);
  const existing = d.catalog.listAttachments(row.id).find((a) => a.node === req.node);
  const backend = backendOf(d, row);
  if (existing) {
    if (existing.implicit && !req.implicit) {
      const updated = { ...existing, implicit: false };
      await commit(d, (w) => {
        expire?.(w);
        w.putAttachment(updated);
      });
      return { attachment: updated, created: false };
    }
    return { attachment: existing, created: false };
  }
  d.store.ensureHeadroom(); // its record must fit once the device is attached
  let device: string | null = null;
  if (req.node === d.nodeId && canAttach(backend)) {
    requireHere(d, row, 'attach');
    device = (await backend.attach(toBackendVolume(row), { node: d.nodeId })).device;
  }
  const attachment: AttachmentRow = {
    volumeId: row.id, node: req.node, device, path: null, readOnly: req.readOnly, implicit: req.implicit, createdAt: d.now(),
  };
  await commit(d, (w) => {
    expire?.(w);
    w.putAttachment(attachment);
  });
  return { attachment, created: true };
}

/** Removes the attachment to `node` (backend detach for this node). Refused while mounted here. */
export async function detachVolume(d: OpDeps, row: VolumeRow, node: string): Promise<void> {
  const existing = d.catalog.listAttachments(row.id).find((a) => a.node === node);
  if (!existing) return;
  if (node === d.nodeId) {
    const refs = d.store.listMountRefs(row.id);
    if (refs.length > 0) {
      throw inUse(`volume "${row.name}" is mounted on this node by ${refs.map((r) => r.consumer).join(', ')}; unmount first`);
    }
    const backend = backendOf(d, row);
    if (canAttach(backend)) await backend.detach(toBackendVolume(row));
  } else if (existing.path !== null) {
    throw inUse(`volume "${row.name}" is mounted on node "${node}" (${existing.path}); unmount it there first`);
  }
  await commit(d, (w) => w.deleteAttachment(row.id, node));
}

/**
 * Two references never share a target or nest one inside another: each target holds
 * exactly one bind of berth's, which its own reference takes down again.
 */
function checkTargetFree(d: OpDeps, row: VolumeRow, consumer: string, target: string): void {
  for (const r of d.store.listMountRefsNear(target)) {
    if (r.volumeId === row.id && r.consumer === consumer) continue; // this consumer's own failed attempt
    const name = r.volumeId === row.id ? row.name : d.catalog.getVolume(r.volumeId)?.name ?? r.volumeId;
    const how = r.target === target ? 'is already the target of' : isWithin(target, r.target!) ? 'is inside the target of' : 'holds the target of';
    throw new BerthError('InUse', `target: "${target}" ${how} ${r.consumer} (volume "${name}", at ${r.target})`, { field: 'target' });
  }
}

/**
 * Adds `consumer`'s reference; the first reference attaches (implicitly) and mounts.
 * `durable`: commit the reference with an fsync (an ephemeral volume's reference is its
 * lifeline, see ephemeral.ts); otherwise it is runtime state like the mount it records.
 */
export async function mountVolume(
  d: OpDeps, row: VolumeRow, req: MountRequest, frontend: Frontend, opts: { durable?: boolean } = {},
): Promise<MountResponse> {
  // The path rules first: nothing on disk is looked at for a target that is refused.
  const target = req.target === undefined || req.target === null ? null : checkTarget(req.target, d.targets);
  const flags = parseMountFlags(req.mountFlags);
  mustBeReady(row);
  if (req.fsType !== undefined && row.fsType !== null && row.fsType !== req.fsType) {
    throw invalidArgument('fsType', `volume ${row.name} has filesystem ${row.fsType}, the request asks for ${req.fsType}`);
  }
  requireHere(d, row, 'mount');
  const backend = backendOf(d, row);
  const refs = d.store.listMountRefs(row.id);
  const mine = refs.find((r) => r.consumer === req.consumer);
  const local = localAttachment(d, row.id);
  if (mine?.state === 'committed') {
    return { volume: loadVolume(d, row), path: mine.target ?? local?.path ?? '', existing: true };
  }
  if (row.accessMode === 'ReadWriteOncePod' && !isStageConsumer(req.consumer)) {
    const other = refs.find((r) => r.consumer !== req.consumer && !isStageConsumer(r.consumer));
    if (other) throw inUse(`volume "${row.name}" is ReadWriteOncePod and already used by ${other.consumer}`);
  }
  if (target !== null) checkTargetFree(d, row, req.consumer, target);
  // ReadWriteOnce / ReadWriteOncePod: one node (fencing.ts decides when another may take over).
  let expire = claimChecks(d, row, d.nodeId);
  const readOnly = row.accessMode === 'ReadOnlyMany' || req.readOnly === true || flags.readOnly;
  // The commit after the mount must fit on the state disk, or the mount is not started.
  d.store.ensureHeadroom();

  // A leftover of a failed attempt: take down what it bound, then start over.
  if (mine?.target) await unbindTarget(d.exec, targetRecord(mine, local?.path ?? null));
  d.store.tx(() => {
    if (mine) d.store.deleteMountRef(row.id, mine.consumer);
    d.store.insertMountRef({
      volumeId: row.id, consumer: req.consumer, frontend, target, readOnly, state: 'pending', createdAt: d.now(),
      bindSource: target === null ? null : (local?.path ?? null),
    });
  }, RUNTIME);
  const undo: Array<() => Promise<void>> = [];
  // This node's attachment as the commit will write it (null: unchanged).
  let attachment: AttachmentRow | null = null;
  const bindings: Array<() => void> = [];
  try {
    let path = local?.path ?? null;
    if (path === null) {
      attachment = local ?? {
        volumeId: row.id, node: d.nodeId, device: null, path: null, readOnly: false, implicit: true, createdAt: d.now(),
      };
      if (!local && clustered(d)) {
        // Claimed before the kernel is touched: another node sees this one holding it. A hold
        // taken over from a fenced or dead node goes in the same commit.
        const claim = attachment;
        const take = expire;
        expire = null;
        await commit(d, (w) => {
          take?.(w);
          w.putAttachment(claim);
        }, RUNTIME);
        undo.push(() => commit(d, (w) => w.deleteAttachment(row.id, d.nodeId), RUNTIME));
      }
      const device = await ensureDevice(d, row, backend, attachment, undo);
      const mounted = (await backend.mount(toBackendVolume(row), { node: d.nodeId, device })).path;
      undo.push(() => backend.unmount(toBackendVolume(row)));
      attachment = { ...attachment, device, path: mounted };
      path = mounted;
    }
    if (target !== null) {
      const source = path;
      // What the bind will show is on record before the bind exists, so a crash right after
      // it leaves a pending reference reconcile can recognise the bind by.
      if (local?.path == null) {
        d.store.tx(() => d.store.setMountRefBinding(row.id, req.consumer, { targetCreated: false, bindSource: source, bindMount: null }), RUNTIME);
      }
      const bound = await bindTarget(d.exec, source, target, { readOnly, file: row.volumeMode === 'block', extraFlags: flags.extra });
      undo.push(() => unbindTarget(d.exec, { target, created: bound.created, mount: bound.mount, source }));
      bindings.push(() => d.store.setMountRefBinding(row.id, req.consumer, { targetCreated: bound.created, bindSource: source, bindMount: bound.mount }));
    }
    const att = attachment;
    const take = expire;
    await commit(d, (w) => {
      take?.(w);
      if (att) w.putAttachment(att);
    }, {
      durable: opts.durable === true,
      local: () => {
        for (const write of bindings) write();
        d.store.setMountRefState(row.id, req.consumer, 'committed');
      },
    });
    return { volume: loadVolume(d, row), path: target ?? path, existing: false };
  } catch (err) {
    for (const step of undo.reverse()) {
      await step().catch((e: unknown) => d.log.warn({ err: e, volume: row.name }, 'mount rollback step failed'));
    }
    d.store.tx(() => d.store.deleteMountRef(row.id, req.consumer), RUNTIME);
    throw err;
  }
}

/**
 * The device to mount with: the one this node's attachment records, or one the backend
 * attaches now (undone if the mount fails, unless the attachment was there before).
 */
async function ensureDevice(d: OpDeps, row: VolumeRow, backend: Backend, attachment: AttachmentRow, undo: Array<() => Promise<void>>): Promise<string | null> {
  if (!canAttach(backend)) return null;
  if (attachment.device) return attachment.device;
  const { device } = await backend.attach(toBackendVolume(row), { node: d.nodeId });
  // Recorded without a device (attached while the backend had none, or for this node by a
  // controller): the attachment stays, so does the device. Else the device goes with a failure.
  if (!localAttachment(d, row.id) || attachment.implicit) undo.push(() => backend.detach(toBackendVolume(row)));
  return device;
}

/**
 * Drops `consumer`'s reference; the last one unmounts and detaches an implicit attachment.
 * Side effects run before the record changes: a crash part-way leaves the reference, and
 * reconcile re-establishes the mount (the caller never got success and will retry).
 */
export async function unmountVolume(d: OpDeps, row: VolumeRow, consumer: string): Promise<void> {
  const refs = d.store.listMountRefs(row.id);
  const mine = refs.find((r) => r.consumer === consumer);
  if (!mine) return;
  const others = refs.filter((r) => r.consumer !== consumer);
  if (others.length > 0) {
    if (mine.target) await unbindTarget(d.exec, targetRecord(mine, localAttachment(d, row.id)?.path ?? null));
    d.store.tx(() => d.store.deleteMountRef(row.id, consumer), RUNTIME);
    return;
  }
  await releaseAll(d, row, [mine.consumer]); // unbinds the target first
}

/**
 * Takes the volume off this node entirely: unbinds every target, unmounts, detaches this
 * node's attachment if it was implicit (or every local attachment when `detachExplicit`),
 * then deletes those records in one commit (an explicit attachment stays, without a path).
 */
export async function releaseAll(d: OpDeps, row: VolumeRow, consumers?: readonly string[], detachExplicit = false): Promise<void> {
  const backend = backendOf(d, row);
  const bv = toBackendVolume(row);
  const local = localAttachment(d, row.id);
  const refs = d.store.listMountRefs(row.id).filter((r) => !consumers || consumers.includes(r.consumer));
  for (const r of refs) if (r.target) await unbindTarget(d.exec, targetRecord(r, local?.path ?? null));
  if (local?.path != null) await backend.unmount(bv);
  const detach = local !== undefined && (local.implicit || detachExplicit);
  if (detach && canAttach(backend)) await backend.detach(bv);
  // Runtime commit even when an explicit attachment goes (detachExplicit): that only
  // happens on the way to a durable 'deleting' intent or a roll-forward, whose fsync covers it.
  await commit(d, (w) => {
    if (detach) w.deleteAttachment(row.id, d.nodeId);
    else if (local && local.path !== null) w.putAttachment({ ...local, path: null });
  }, {
    ...RUNTIME,
    local: () => {
      for (const r of refs) d.store.deleteMountRef(row.id, r.consumer);
    },
  });
}

/**
 * Takes a volume off this node after another node took it over (this node was fenced, or
 * found on its return that the volume had moved): shut down first (nothing here writes to it
 * again, whatever still holds it open), then unbind targets, unmount, detach, and drop this
 * node's references. The catalog is not written: the hold there is another node's now.
 */
export async function releaseMovedAway(d: OpDeps, row: VolumeRow): Promise<void> {
  const backend = backendOf(d, row);
  const bv = toBackendVolume(row);
  if (canFence(backend)) await backend.fence(bv).catch((err: unknown) => d.log.error({ err, volume: row.name }, 'could not fence a volume that moved away'));
  for (const r of d.store.listMountRefs(row.id)) {
    if (r.target) {
      await unbindTarget(d.exec, targetRecord(r, r.bindSource)).catch((err: unknown) =>
        d.log.warn({ err, volume: row.name, target: r.target }, 'could not unbind a target of a volume that moved away'));
    }
  }
  await backend.unmount(bv).catch((err: unknown) => d.log.warn({ err, volume: row.name }, 'could not unmount a volume that moved away'));
  if (canAttach(backend)) {
    await backend.detach(bv).catch((err: unknown) => d.log.warn({ err, volume: row.name }, 'could not detach a volume that moved away (still open: the kernel detaches it when released)'));
  }
  d.store.tx(() => d.store.deleteMountRefs(row.id), RUNTIME);
}
