/**
 * The etcd key layout of the cluster catalog (docs/architecture.md), relative to the
 * configured prefix. One place, so the view, the writer and the tests agree on it.
 */

export const KEYS = {
  volume: (id: string) => `volumes/${id}`,
  name: (name: string) => `names/${name}`,
  attachment: (volumeId: string, node: string) => `attachments/${volumeId}/${node}`,
  attachmentsOf: (volumeId: string) => `attachments/${volumeId}/`,
  snapshot: (id: string) => `snapshots/${id}`,
  snapshotName: (name: string) => `snapshot-names/${name}`,
  node: (id: string) => `nodes/${id}`,
  alive: (id: string) => `alive/${id}`,
  agent: (id: string) => `agents/${id}`,
  fence: (node: string) => `fences/${node}`,
  preempt: (volumeId: string) => `preempts/${volumeId}`,
  lockQueue: (key: string) => `locks/${key}/`,
  /** Put by every catalog commit: its mod revision is the revision of the last commit (fresh()). */
  epoch: 'epoch',
  /** Candidates for cluster leader (election.ts): one key per candidate's lease, its node id as value. */
  leader: 'leader/',
  leaderEntry: (leaseId: string) => `leader/${leaseId}`,
} as const;

/** What a key (relative to the prefix) is, for the view. */
export type ParsedKey =
  | { readonly kind: 'volume'; readonly id: string }
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'attachment'; readonly volumeId: string; readonly node: string }
  | { readonly kind: 'snapshot'; readonly id: string }
  | { readonly kind: 'snapshotName'; readonly name: string }
  | { readonly kind: 'node'; readonly id: string }
  | { readonly kind: 'alive'; readonly id: string }
  | { readonly kind: 'agent'; readonly id: string }
  | { readonly kind: 'fence'; readonly node: string }
  | { readonly kind: 'preempt'; readonly volumeId: string }
  | { readonly kind: 'lock'; readonly key: string }
  | { readonly kind: 'leader'; readonly key: string }
  | { readonly kind: 'other' };

export function parseKey(rel: string): ParsedKey {
  const slash = rel.indexOf('/');
  const head = slash < 0 ? rel : rel.slice(0, slash);
  const rest = slash < 0 ? '' : rel.slice(slash + 1);
  switch (head) {
    case 'volumes':
      return { kind: 'volume', id: rest };
    case 'names':
      return { kind: 'name', name: rest };
    case 'attachments': {
      const i = rest.indexOf('/');
      return i < 0 ? { kind: 'other' } : { kind: 'attachment', volumeId: rest.slice(0, i), node: rest.slice(i + 1) };
    }
    case 'snapshots':
      return { kind: 'snapshot', id: rest };
    case 'snapshot-names':
      return { kind: 'snapshotName', name: rest };
    case 'nodes':
      return { kind: 'node', id: rest };
    case 'alive':
      return { kind: 'alive', id: rest };
    case 'agents':
      return { kind: 'agent', id: rest };
    case 'fences':
      return { kind: 'fence', node: rest };
    case 'preempts':
      return { kind: 'preempt', volumeId: rest };
    case 'locks':
      return { kind: 'lock', key: rel };
    case 'leader':
      return rest === '' ? { kind: 'other' } : { kind: 'leader', key: rel };
    default:
      return { kind: 'other' };
  }
}

/** The end of a prefix range: the prefix with its last byte incremented (etcd's range_end). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return Buffer.from([0]);
}
