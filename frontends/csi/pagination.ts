/**
 * Cursor pagination for ListVolumes / ListSnapshots. The token is the id of the last
 * entry returned; the next page starts after it in id order. Ids are ULID-based, so they
 * sort by creation time: entries created between pages appear on a later page, and a
 * token stays valid when the entry it names has been deleted meanwhile.
 */
import { invalidStartingToken } from './errors.js';

export interface Page<T> {
  readonly entries: T[];
  /** '' when this is the last page. */
  readonly nextToken: string;
}

/**
 * @param tokenPattern what a token berth issued looks like ("vol-..." / "snap-..."); any
 *   other token is ABORTED, as the spec requires for tokens the plugin cannot interpret.
 */
export function paginate<T extends { readonly id: string }>(
  items: readonly T[],
  startingToken: string,
  maxEntries: number,
  tokenPattern: RegExp,
): Page<T> {
  if (startingToken && !tokenPattern.test(startingToken)) throw invalidStartingToken(startingToken);
  const sorted = [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rest = startingToken ? sorted.filter((v) => v.id > startingToken) : sorted;
  if (maxEntries <= 0 || rest.length <= maxEntries) return { entries: rest, nextToken: '' };
  const entries = rest.slice(0, maxEntries);
  return { entries, nextToken: entries[entries.length - 1]!.id };
}

export const VOLUME_TOKEN = /^vol-[0-9a-z]{26}$/;
export const SNAPSHOT_TOKEN = /^snap-[0-9a-z]{26}$/;
