/**
 * Consumer targets: making a path show a volume with a bind mount (a directory for
 * filesystem volumes, a file for block devices), and taking exactly that mount away again.
 *
 * - Where a target may be is decided first, from the path alone (target-policy.ts).
 * - A target that is a symlink or passes through one is refused (checkNoSymlinks), before
 *   anything is made and again before anything is unmounted: a mount follows the link, an
 *   unmount of the literal path would not find it. The usual bind makes and binds the
 *   target in one system-call thread that resolves its path with no link allowed at all
 *   (core/os bindMountCreating); anything else it meets sends bindTarget through the checks.
 * - berth records whether it made the target and which mount it made (mountinfo id,
 *   major:minor, root). Unbinding takes down that mount, and copies of it a crash stacked on
 *   top, never a mount that was there before; it refuses while a mount berth did not make
 *   covers its own; it removes the target only when berth made it.
 *
 * A component swapped for a symlink after the check cannot redirect the bind: the kernel
 * opens the target with no symlink in its path (openat2 RESOLVE_NO_SYMLINKS, core/os
 * bindMount) and the bind is attached to that descriptor. The bind's identity is still
 * checked right after (it must be at the target and show the source).
 */
import { lstat, mkdir, open, realpath, rm, rmdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BerthError, internal, invalidArgument } from './errors.js';
import type { Exec } from './os/exec.js';
import {
  bindMount, bindMountCreating, bindSourceOf, mountStack, ownBind, readMountInfo, unmountBind, unmountBindRemoving, type MountEntry, type MountIdentity,
} from './os/mounts.js';
import type { MountRefRow } from './store/store.js';

/** Bind-mount flags a consumer may ask for; anything else is refused naming "mountFlags". */
export const ALLOWED_MOUNT_FLAGS = ['ro', 'rw', 'nosuid', 'nodev', 'noexec', 'noatime', 'relatime', 'nodiratime', 'strictatime'] as const;

/** Splits flags into readOnly + extra whitelisted flags; refuses unknown ones. */
export function parseMountFlags(flags: readonly string[] | undefined, field = 'mountFlags'): { readOnly: boolean; extra: string[] } {
  let readOnly = false;
  const extra: string[] = [];
  for (const [i, raw] of (flags ?? []).entries()) {
    // CSI sends flags like "ro,noatime" in one element too.
    for (const f of String(raw).split(',').map((s) => s.trim()).filter(Boolean)) {
      if (!(ALLOWED_MOUNT_FLAGS as readonly string[]).includes(f)) {
        throw invalidArgument(`${field}[${i}]`, `"${f}" is not an allowed mount flag (allowed: ${ALLOWED_MOUNT_FLAGS.join(', ')})`);
      }
      if (f === 'ro') readOnly = true;
      else if (f !== 'rw' && !extra.includes(f)) extra.push(f);
    }
  }
  return { readOnly, extra };
}

/** What a target path is on disk (after checkNoSymlinks). */
export type TargetKind = 'missing' | 'directory' | 'file' | 'other';

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * The one symlink check for targets: refuses a `target` that is a symbolic link or passes
 * through one (InvalidArgument naming `field`), and says what it is. The deepest existing
 * ancestor must resolve to itself (realpath: one call instead of an lstat per component),
 * and the first missing component must not be a dangling link. `target` must be normalized.
 * @example const kind = await checkNoSymlinks('/var/lib/kubelet/pods/p/volumes/v/mount');
 */
export async function checkNoSymlinks(target: string, field = 'target'): Promise<TargetKind> {
  // The usual cases (the target exists, or only its last component is missing) take one
  // round of three calls side by side instead of up to three rounds in turn: each call is a
  // trip through libuv's pool, the largest part of a publish's own time on a busy node.
  const parent = dirname(target);
  const [atTarget, atParent, lstatTarget] = await Promise.all([settle(realpath(target)), settle(realpath(parent)), settle(lstat(target))]);
  let existing = target;
  let resolved = atTarget;
  while (!resolved.ok) {
    const err = resolved.err;
    if (code(err) === 'ELOOP') throw invalidArgument(field, `"${target}" passes through a symbolic link loop`);
    if (code(err) === 'ENOTDIR') throw invalidArgument(field, `"${target}" passes through something that is not a directory`);
    if (code(err) !== 'ENOENT' || existing === '/') throw err;
    existing = dirname(existing);
    resolved = existing === parent ? atParent : await settle(realpath(existing));
  }
  const real = resolved.value;
  if (real !== existing) {
    const what = existing === target ? 'is a symbolic link' : 'passes through a symbolic link';
    throw invalidArgument(field, `"${target}" ${what} (${existing} resolves to ${real}); berth mounts only on real paths`);
  }
  if (existing !== target) {
    // realpath said ENOENT below `existing`: the next component is missing, or a dangling link.
    const next = existing === '/' ? `/${target.slice(1).split('/')[0]}` : `${existing}/${target.slice(existing.length + 1).split('/')[0]}`;
    const st = await (next === target ? unsettle(lstatTarget) : lstat(next)).catch((err: unknown) => (code(err) === 'ENOENT' ? null : Promise.reject(err)));
    if (st !== null) throw invalidArgument(field, `"${target}" passes through a symbolic link (${next} points nowhere)`);
    return 'missing';
  }
  const st = await unsettle(lstatTarget);
  return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
}

type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly err: unknown };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true, value }), (err: unknown) => ({ ok: false, err }));
const unsettle = async <T>(s: Settled<T>): Promise<T> => {
  if (s.ok) return s.value;
  throw s.err;
};

/** What berth made at a target: whether it created the path, and the bind mount itself. */
export interface BoundTarget {
  readonly created: boolean;
  readonly mount: MountIdentity;
}

/**
 * Makes `target` show `source` with a new bind mount, creating the target first when it is
 * missing: a directory, or an empty file when `file` (block devices); a target berth created
 * and could not bind is removed again. Returns what to record. The caller has checked the
 * path rules and that no other reference uses the target.
 */
export async function bindTarget(
  exec: Exec,
  source: string,
  target: string,
  opts: { readOnly: boolean; file: boolean; extraFlags?: readonly string[] },
): Promise<BoundTarget> {
  // The source is berth's own path and stays put under the volume's lock: resolve it while
  // the target is prepared rather than after the bind.
  const resolvingSource = realpath(source);
  resolvingSource.catch(() => undefined); // awaited below, unless the target is refused first
  // The usual case in one trip to a system-call thread: the target made if missing and bound,
  // with no symbolic link anywhere in its path. Anything unusual (a link, a missing parent, a
  // target of the other kind, a refused bind) takes the step-by-step way below, from the
  // start: its checks refuse or name what is wrong.
  const created = (await bindMountCreating(source, target, { readOnly: opts.readOnly, flags: opts.extraFlags, file: opts.file }))?.created
    ?? await prepareAndBind(exec, source, target, opts);
  // The bind says nothing about the mount it made: read it back, and check it is at the
  // target showing the source (the lock on the volume keeps berth from racing itself).
  const [table, realSource] = await Promise.all([readMountInfo(), resolvingSource]);
  const top = mountStack(table, target).at(-1);
  const src = bindSourceOf(table, realSource);
  if (!top || !src || top.majorMinor !== src.majorMinor || top.root !== src.root) {
    const seen = top ? `${top.fsType} ${top.source} (${top.majorMinor} ${top.root})` : 'no mount';
    throw internal(`bind-mounted ${source} at ${target}, but the mount table shows ${seen} there`);
  }
  return { created, mount: { id: top.id, majorMinor: top.majorMinor, root: top.root } };
}

/** The step-by-step bind: target checked (and made when missing), then bound; true when this call made it. */
async function prepareAndBind(exec: Exec, source: string, target: string, opts: { readOnly: boolean; file: boolean; extraFlags?: readonly string[] }): Promise<boolean> {
  const created = await prepareTarget(target, opts.file);
  try {
    await bindMount(exec, source, target, { readOnly: opts.readOnly, flags: opts.extraFlags });
  } catch (err) {
    if (created) await removeTarget(target);
    throw err;
  }
  return created;
}

/** Checks the target on disk and creates it when missing; true when this call created it. */
async function prepareTarget(target: string, file: boolean): Promise<boolean> {
  const kind = await checkNoSymlinks(target);
  if (kind !== 'missing') {
    checkKind(target, kind, file);
    return false;
  }
  // Created exclusively (mkdir, O_EXCL), so "created" is a fact: one that appeared
  // meanwhile is someone else's and is checked like an existing one.
  const made = file
    ? await mkdir(dirname(target), { recursive: true }).then(() => open(target, 'wx', 0o600)).then(async (fh) => {
      await fh.close();
      return true;
    }, eexist)
    : await mkdir(target).then(() => true, (err: unknown) => (code(err) === 'ENOENT'
      ? mkdir(dirname(target), { recursive: true }).then(() => mkdir(target)).then(() => true, eexist)
      : eexist(err)));
  if (!made) checkKind(target, await checkNoSymlinks(target), file);
  return made;
}

const eexist = (err: unknown): false => {
  if (code(err) === 'EEXIST') return false;
  throw err;
};

function checkKind(target: string, kind: TargetKind, file: boolean): void {
  if (file && kind === 'directory') throw invalidArgument('target', `"${target}" is a directory; a block volume needs a file target`);
  if (file && kind !== 'file') throw invalidArgument('target', `"${target}" exists and is not a regular file`);
  if (!file && kind !== 'directory') throw invalidArgument('target', `"${target}" exists and is not a directory`);
}

/** Removes a target berth created: an empty directory, or an empty file. Anything else stays. */
async function removeTarget(target: string): Promise<void> {
  // rmdir first (the usual case); ENOTDIR -> a file (block). Not empty, missing, or still a
  // mount point (EBUSY): left alone.
  const err = await rmdir(target).then(() => null, (e: unknown) => code(e) ?? 'unknown');
  if (err !== 'ENOTDIR') return;
  const st = await lstat(target).catch(() => null);
  if (st?.isFile() && st.size === 0) await rm(target, { force: true }).catch(() => undefined);
}

/** What berth knows about one reference's target, as unbindTarget and targetState need it. */
export interface TargetRecord {
  readonly target: string;
  readonly created: boolean;
  /** The bind berth made, when recorded. */
  readonly mount: MountIdentity | null;
  /** The path the bind shows (to recognise a bind whose identity was not recorded). */
  readonly source: string | null;
}

/** A reference's TargetRecord; `volumePath` stands in for a bind source not recorded. */
export function targetRecord(ref: Pick<MountRefRow, 'target' | 'targetCreated' | 'bindSource' | 'bindMount'>, volumePath: string | null): TargetRecord {
  return { target: ref.target ?? '', created: ref.targetCreated, mount: ref.bindMount, source: ref.bindSource ?? volumePath };
}

function covered(target: string, by: MountEntry): BerthError {
  return new BerthError(
    'FailedPrecondition',
    `target: "${target}" is covered by a mount berth did not make (${by.fsType} ${by.source}, mount id ${by.id}); unmount that first (berth keeps its reference until then)`,
    { field: 'target' },
  );
}

/** The symlink check at unmount time: the path changed under berth, which is not the caller's argument. */
async function stillReal(target: string): Promise<TargetKind> {
  try {
    return await checkNoSymlinks(target);
  } catch (err) {
    if (err instanceof BerthError && err.kind === 'InvalidArgument') {
      throw new BerthError('FailedPrecondition', `${err.message}; berth will not unmount through it (it keeps its reference)`, { field: 'target' });
    }
    throw err;
  }
}

/** The mount stack at a target and which of it is berth's (one mount table read). */
async function readOwn(rec: TargetRecord) {
  const [table, source] = await Promise.all([
    readMountInfo(),
    rec.source === null ? null : realpath(rec.source).catch(() => rec.source),
  ]);
  const stack = mountStack(table, rec.target);
  const plan = ownBind(stack, { mount: rec.mount, source: source === null ? null : bindSourceOf(table, source) });
  return { stack, plan };
}

/** More stacked copies of berth's bind than this at one path is a bug, not a state to converge from. */
const MAX_STACKED = 8;

/**
 * Takes down berth's bind at the target (and copies of it stacked on top by a crash), then
 * removes the target if berth created it. A mount that was there before berth's stays;
 * a mount berth did not make on top of berth's is FailedPrecondition naming the target,
 * with nothing unmounted (the caller keeps its record). Missing target: nothing to do.
 */
export async function unbindTarget(exec: Exec, rec: TargetRecord): Promise<void> {
  // The symlink check and the first look at the mount table side by side (both only read).
  const [kind, first] = await Promise.all([stillReal(rec.target), readOwn(rec)]);
  if (kind === 'missing') return;
  for (let i = 0; ; i++) {
    const { plan } = i === 0 ? first : await readOwn(rec);
    if (plan.coveredBy) throw covered(rec.target, plan.coveredBy);
    if (plan.count === 0) break;
    if (i === MAX_STACKED) throw internal(`${rec.target} still has ${plan.count} of berth's binds after ${MAX_STACKED} unmounts`);
    // The last of berth's binds and the target berth made for it go in one call.
    if (plan.count === 1 && rec.created) {
      await unmountBindRemoving(rec.target);
      return;
    }
    await unmountBind(exec, rec.target);
    if (plan.count === 1) break;
  }
  if (rec.created) await removeTarget(rec.target);
}

/**
 * What a reference's target shows now (reconcile): 'bound' to berth's bind (`mount`: the one
 * to record, also when it was recognised by its source only), 'covered' by a mount berth did
 * not make, or 'unbound'.
 */
export async function targetState(
  rec: TargetRecord,
): Promise<{ state: 'bound'; mount: MountIdentity } | { state: 'covered'; error: BerthError } | { state: 'unbound' }> {
  if ((await stillReal(rec.target)) === 'missing') return { state: 'unbound' };
  const { stack, plan } = await readOwn(rec);
  if (plan.coveredBy) return { state: 'covered', error: covered(rec.target, plan.coveredBy) };
  if (plan.count === 0) return { state: 'unbound' };
  const base = stack[stack.length - plan.count]!;
  return { state: 'bound', mount: { id: base.id, majorMinor: base.majorMinor, root: base.root } };
}
