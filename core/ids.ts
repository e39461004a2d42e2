/**
 * Ids: "<prefix>-" + a lowercase ULID (10 chars of time, 16 of randomness, Crockford
 * base32), so ids sort by creation time and never repeat. The clock is injected.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
export const ID_BODY_LENGTH = 26;

export type IdGenerator = (prefix: 'vol' | 'snap') => string;

/** @example const newId = createIdGenerator(() => new Date()); newId('vol') // 'vol-01j...' */
export function createIdGenerator(clock: () => Date = () => new Date()): IdGenerator {
  return (prefix) => {
    let t = clock().getTime();
    let time = '';
    for (let i = 0; i < 10; i++) {
      time = ALPHABET[t % 32]! + time;
      t = Math.floor(t / 32);
    }
    const rnd = randomBytes(16);
    let rand = '';
    for (let i = 0; i < 16; i++) rand += ALPHABET[rnd[i]! % 32];
    return `${prefix}-${time}${rand}`;
  };
}

const ID_RE = /^(vol|snap)-[0-9a-hjkmnp-tv-z]{26}$/;

/** True when `ref` looks like an id of that kind (so lookups try the id index first). */
export const looksLikeId = (ref: string, prefix: 'vol' | 'snap'): boolean => ref.startsWith(`${prefix}-`) && ID_RE.test(ref);
