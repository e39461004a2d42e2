/**
 * Where a backend keeps a volume on disk. Ids come from the core ("vol-..."), but a
 * path built from one must never leave its root, so the id is checked here too.
 */
import { join } from 'node:path';
import { internal } from '../core/errors.js';

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** `<root>/<id><suffix>`, refusing ids that could escape the root ("..", "/", NUL). */
export function childPath(root: string, id: string, suffix = ''): string {
  if (!SAFE_ID.test(id) || id.includes('..')) throw internal(`refusing unsafe volume id ${JSON.stringify(id)}`);
  return join(root, `${id}${suffix}`);
}

/** The managed mount point of a volume: <stateRoot>/mounts/<id> (shared layout, see the brief). */
export function managedMountPath(stateRoot: string, id: string): string {
  return childPath(join(stateRoot, 'mounts'), id);
}

/** Volume ids look like "vol-<26 chars>"; leftovers sweeps only consider names of that shape. */
export const VOLUME_ID_RE = /^vol-[0-9a-z]{26}$/;
