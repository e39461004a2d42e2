/**
 * Attach / detach / mount / unmount for one volume. Every function here assumes the
 * caller holds the volume's lock (volume-service.ts takes it) and re-reads records itself.
 *
 * Durability pattern (convention 8): a mount reference is inserted as 'pending' before any
 * side effect and set 'committed' after the last one; a failure undoes what this call did
 * and deletes the pending row; a crash leaves the pending row, which reconcile rolls back.
 * Attachment rows are written after the backend attached (a crash in between leaves a
 * device with no record, which reconcile detaches).
 *
 * Mount references, mounted paths and implicit attachments record kernel state that a
 * power cut wipes (mounts, loop devices), so they are committed as runtime commits
 * (`RUNTIME`, no fsync; see TxOptions): they survive kill -9, and after a reboot nothing is
 * left in the kernel for a lost record to leak. Explicit attachments (ControllerPublish,
 * `berth volume attach`) are decisions a CO made: those stay durable.
 */
import type { Backend } from './backend.js';
import { backendOf, loadVolume, toBackendVolume, type CoreDeps } from './core-deps.js';
import { BerthError, failedPrecondition, inUse } from './errors.js';
import type { MountRequest, MountResponse } from './service.js';
import type { AttachmentRow, VolumeRow } from './store/store.js';
import { checkTarget, isWithin } from './target-policy.js';
import { bindTarget, parseMountFlags, targetRecord, unbindTarget } from './targets.js';
import type { Frontend } from './types.js';

/** Commit options for records of runtime (kernel) state. */
const RUNTIME = { durable: false } as const;

/** A "csi-stage:" reference is the node-global staging mount, not a workload (ReadWriteOncePod). */
const isStageConsumer = (consumer: string) => consumer.startsWith('csi-stage:');

function mustBeReady(row: VolumeRow): void {
  if (row.status !== 'ready') throw failedPrecondition(`volume "${row.name}" is ${row.status}, not ready`);
}

/** ReadWriteOnce / ReadWriteOncePod: attachments on at most one node. */
function checkSingleNode(row: VolumeRow, attachments: readonly AttachmentRow[], node: string): void {
  if (row.accessMode !== 'ReadWriteOnce' && row.accessMode !== 'ReadWriteOncePod') return;
  const other = attachments.find((a) => a.node !== node);
  if (other) {
    throw failedPrecondition(`volume "${row.name}" is ${row.accessMode} and attached to node "${other.node}"; detach it there first`);
  }
}

/**
 * Records an attachment to `node` and, for this node on an attachable backend, makes the
 * backend attach. Existing attachment: returned as is (an explicit request turns an
 * implicit attachment explicit, so the last unmount no longer detaches it).
 */
export async function attachVolume(
  d: CoreDeps,
  row: VolumeRow,
  req: { node: string; readOnly: boolean; implicit: boolean },
): Promise<{ attachment: AttachmentRow; created: boolean }> {
  mustBeReady(row);
  const attachments = d.store.listAttachments(row.id);
  checkSingleNode(row, attachments, req.node);
  const existing = attachments.find((a) => a.node === req.node);
  const backend = backendOf(d, row);
  if (existing) {
    if (existing.implicit && !req.implicit) {
      const updated = { ...existing, implicit: false };
      d.store.putAttachment(updated);
      return { attachment: updated, created: false };
    }
    return { attachment: existing, created: false };
  }
  d.store.ensureHeadroom(); // its record must fit once the device is attached
  let device: string | null = null;
  if (req.node === d.nodeId && backend.capabilities.attachable) {
    device = (await backend.attach(toBackendVolume(row))).device;
  }
  const attachment: AttachmentRow = {
    volumeId: row.id, node: req.node, device, readOnly: req.readOnly, implicit: req.implicit, createdAt: d.now(),
  };
  d.store.putAttachment(attachment);
  return { attachment, created: true };
}

/** Removes the attachment to `node` (backend detach for this node). Refused while mounted here. */
export async function detachVolume(d: CoreDeps, row: VolumeRow, node: string): Promise<void> {
  const existing = d.store.listAttachments(row.id).find((a) => a.node === node);
  if (!existing) return;
  if (node === d.nodeId) {
    const refs = d.store.listMountRefs(row.id);
    if (refs.length > 0) {
      throw inUse(`volume "${row.name}" is mounted on this node by ${refs.map((r) => r.consumer).join(', ')}; unmount first`);
    }
    const backend = backendOf(d, row);
    if (backend.capabilities.attachable) await backend.detach(toBackendVolume(row));
  }
  d.store.deleteAttachment(row.id, node);
}

/**
 * Two references never share a target or nest one inside another: each target holds
 * exactly one bind of berth's, which its own reference takes down again.
 */
function checkTargetFree(d: CoreDeps, row: VolumeRow, consumer: string, target: string): void {
  for (const r of d.store.listMountRefsNear(target)) {
    if (r.volumeId === row.id && r.consumer === consumer) continue; // this consumer's own failed attempt
    const name = r.volumeId === row.id ? row.name : d.store.getVolume(r.volumeId)?.name ?? r.volumeId;
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
  d: CoreDeps, row: VolumeRow, req: MountRequest, frontend: Frontend, opts: { durable?: boolean } = {},
): Promise<MountResponse> {
  // The path rules first: nothing on disk is looked at for a target that is refused.
  const target = req.target === undefined || req.target === null ? null : checkTarget(req.target, d.targets);
  const flags = parseMountFlags(req.mountFlags);
  mustBeReady(row);
  const backend = backendOf(d, row);
  const refs = d.store.listMountRefs(row.id);
  const mine = refs.find((r) => r.consumer === req.consumer);
  if (mine?.state === 'committed') {
    const current = d.store.getVolume(row.id)!;
    return { volume: loadVolume(d, current), path: mine.target ?? current.path ?? '', existing: true };
  }
  if (row.accessMode === 'ReadWriteOncePod' && !isStageConsumer(req.consumer)) {
    const other = refs.find((r) => r.consumer !== req.consumer && !isStageConsumer(r.consumer));
    if (other) throw inUse(`volume "${row.name}" is ReadWriteOncePod and already used by ${other.consumer}`);
  }
  if (target !== null) checkTargetFree(d, row, req.consumer, target);
  checkSingleNode(row, d.store.listAttachments(row.id), d.nodeId);
  const readOnly = row.accessMode === 'ReadOnlyMany' || req.readOnly === true || flags.readOnly;
  // The commit after the mount must fit on the state disk, or the mount is not started.
  d.store.ensureHeadroom();

  // A leftover of a failed attempt: take down what it bound, then start over.
  if (mine?.target) await unbindTarget(d.exec, targetRecord(mine, row.path));
  d.store.tx(() => {
    if (mine) d.store.deleteMountRef(row.id, mine.consumer);
    d.store.insertMountRef({
      volumeId: row.id, consumer: req.consumer, frontend, target, readOnly, state: 'pending', createdAt: d.now(),
      bindSource: target === null ? null : row.path,
    });
  }, RUNTIME);
  const undo: Array<() => Promise<void>> = [];
  // Records written together with the commit (one fsync): a crash before it leaves a
  // pending reference, and reconcile releases whatever the OS holds without records.
  const commit: Array<() => void> = [];
  try {
    let path = row.path;
    if (path === null) {
      const device = await ensureLocalAttachment(d, row, backend, undo, commit);
      const mounted = (await backend.mount(toBackendVolume(row), { device })).path;
      undo.push(() => backend.unmount(toBackendVolume(row)));
      commit.push(() => d.store.updateVolume(row.id, { path: mounted }));
      path = mounted;
    }
    if (target !== null) {
      const source = path;
      // What the bind will show is on record before the bind exists, so a crash right after
      // it leaves a pending reference reconcile can recognise the bind by.
      if (row.path === null) {
        d.store.tx(() => d.store.setMountRefBinding(row.id, req.consumer, { targetCreated: false, bindSource: source, bindMount: null }), RUNTIME);
      }
      const bound = await bindTarget(d.exec, source, target, { readOnly, file: row.volumeMode === 'block', extraFlags: flags.extra });
      undo.push(() => unbindTarget(d.exec, { target, created: bound.created, mount: bound.mount, source }));
      commit.push(() => d.store.setMountRefBinding(row.id, req.consumer, { targetCreated: bound.created, bindSource: source, bindMount: bound.mount }));
    }
    d.store.tx(() => {
      for (const write of commit) write();
      d.store.setMountRefState(row.id, req.consumer, 'committed');
    }, opts.durable ? {} : RUNTIME);
    const current = d.store.getVolume(row.id)!;
    return { volume: loadVolume(d, current), path: target ?? path, existing: false };
  } catch (err) {
    for (const step of undo.reverse()) {
      await step().catch((e: unknown) => d.log.warn({ err: e, volume: row.name }, 'mount rollback step failed'));
    }
    d.store.tx(() => d.store.deleteMountRef(row.id, req.consumer), RUNTIME);
    throw err;
  }
}

/**
 * The device to mount with: this node's attachment, made implicitly (backend attach now,
 * record at commit) when there is none.
 */
async function ensureLocalAttachment(
  d: CoreDeps,
  row: VolumeRow,
  backend: Backend,
  undo: Array<() => Promise<void>>,
  commit: Array<() => void>,
): Promise<string | null> {
  if (!backend.capabilities.attachable) return null;
  const existing = d.store.listAttachments(row.id).find((a) => a.node === d.nodeId);
  if (existing?.device) return existing.device;
  const { device } = await backend.attach(toBackendVolume(row));
  if (existing) {
    // Recorded without a device (attached while the backend had none): keep it, add the device.
    commit.push(() => d.store.putAttachment({ ...existing, device }));
    return device;
  }
  undo.push(() => backend.detach(toBackendVolume(row)));
  commit.push(() =>
    d.store.putAttachment({ volumeId: row.id, node: d.nodeId, device, readOnly: false, implicit: true, createdAt: d.now() }),
  );
  return device;
}

/**
 * Drops `consumer`'s reference; the last one unmounts and detaches an implicit attachment.
 * Side effects run before the record changes: a crash part-way leaves the reference, and
 * reconcile re-establishes the mount (the caller never got success and will retry).
 */
export async function unmountVolume(d: CoreDeps, row: VolumeRow, consumer: string): Promise<void> {
  const refs = d.store.listMountRefs(row.id);
  const mine = refs.find((r) => r.consumer === consumer);
  if (!mine) return;
  const others = refs.filter((r) => r.consumer !== consumer);
  if (others.length > 0) {
    if (mine.target) await unbindTarget(d.exec, targetRecord(mine, row.path));
    d.store.tx(() => d.store.deleteMountRef(row.id, consumer), RUNTIME);
    return;
  }
  await releaseAll(d, row, [mine.consumer]); // unbinds the target first
}

/**
 * Takes the volume off this node entirely: unbinds every target, unmounts, detaches this
 * node's attachment if it was implicit (or every local attachment when `detachExplicit`),
 * then deletes those records in one transaction.
 */
export async function releaseAll(d: CoreDeps, row: VolumeRow, consumers?: readonly string[], detachExplicit = false): Promise<void> {
  const backend = backendOf(d, row);
  const bv = toBackendVolume(row);
  const refs = d.store.listMountRefs(row.id).filter((r) => !consumers || consumers.includes(r.consumer));
  for (const r of refs) if (r.target) await unbindTarget(d.exec, targetRecord(r, row.path));
  const current = d.store.getVolume(row.id) ?? row;
  if (current.path !== null) await backend.unmount(bv);
  const local = d.store.listAttachments(row.id).find((a) => a.node === d.nodeId);
  const detach = local !== undefined && (local.implicit || detachExplicit);
  if (detach && backend.capabilities.attachable) await backend.detach(bv);
  // Runtime commit even when an explicit attachment goes (detachExplicit): that only
  // happens on the way to a durable 'deleting' intent or a roll-forward, whose fsync covers it.
  d.store.tx(() => {
    for (const r of refs) d.store.deleteMountRef(row.id, r.consumer);
    d.store.updateVolume(row.id, { path: null });
    if (detach) d.store.deleteAttachment(row.id, d.nodeId);
  }, RUNTIME);
}
