/**
 * Two rules for strings a user sent, applied wherever they are logged, embedded in a
 * message or used as keys of a map. Imports nothing, so the per-call executables
 * (FlexVolume, dvdcli) can use it without loading the core.
 *
 * - clip: a user string in a log line or an error message is one printable line of bounded
 *   length. A 1 MB volume id then costs a few hundred bytes per log line instead of
 *   megabytes, and an error answer stays far below what a protocol can carry (a gRPC status
 *   message travels in an HTTP/2 trailer, and one of ~75 KB breaks the CO's whole channel).
 * - setOwn: maps of user strings (labels, options, Docker Opts, CSI parameters, FlexVolume
 *   and dvdcli options) are plain objects built key by key. `map[key] = value` with the key
 *   "__proto__" adds no key: it calls Object.prototype's __proto__ setter, which drops a
 *   string silently and makes an object the map's prototype (its keys then read as fields).
 *   setOwn always defines an own key, so "__proto__" stays data that validators see and
 *   refuse by name.
 */

/** How many characters of a user string a log line or an error message keeps. */
export const CLIP_CHARS = 160;

/**
 * `value` as one printable line of at most `max` characters (plus a note of how much was
 * cut): control characters become \xNN, and the rest of a longer string is replaced by
 * "...(N more characters)".
 * @example clip('x'.repeat(1000)) // 'xxx...x...(840 more characters)'
 */
export function clip(value: string, max = CLIP_CHARS): string {
  const s = String(value);
  // Escape only what is kept, so a huge string costs nothing past the cut.
  const head = cut(s, max);
  const clean = head.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return s.length > head.length ? `${clean}${more(s.length - head.length)}` : clean;
}

/**
 * `value` cut to at most `max` characters (plus the note of how much was cut), nothing escaped:
 * for text that may span lines on purpose, such as a command's error output in a message.
 * @example truncate('abcdef', 3) // 'abc...(3 more characters)'
 */
export function truncate(value: string, max: number): string {
  const head = cut(value, max);
  return value.length > head.length ? `${head}${more(value.length - head.length)}` : value;
}

/** The first `max` characters, never ending inside a surrogate pair. */
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const head = s.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(head) ? head.slice(0, -1) : head;
}

const more = (n: number) => `...(${n} more characters)`;

/**
 * Sets `map[key] = value` as an own, enumerable property whatever the key, "__proto__" included.
 * @example const opts: Record<string, string> = {}; setOwn(opts, '__proto__', 'x'); Object.keys(opts) // ['__proto__']
 */
export function setOwn<V>(map: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}
