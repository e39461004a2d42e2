/**
 * The node a backend serves. attach and mount name the node they act for (core/backend.ts);
 * storage local to this node (and any device in this kernel) can serve only this node, so a
 * driver refuses another one instead of handing back a path or device that is not there.
 */
import { BerthError } from '../core/errors.js';

/**
 * Throws FailedPrecondition (field "node") unless `node` is the backend's own node.
 * @example requireOwnNode({ backend: 'local', own: ctx.node, node: opts.node, op: 'mount' });
 */
export function requireOwnNode(a: { backend: string; own: string; node: string; op: 'attach' | 'mount' }): void {
  if (a.node === a.own) return;
  throw new BerthError(
    'FailedPrecondition',
    `backend "${a.backend}" on node "${a.own}" cannot ${a.op} a volume for node "${a.node}": its storage is local to node "${a.own}"`,
    { field: 'node' },
  );
}
