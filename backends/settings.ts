/**
 * Helpers the built-in drivers share to validate their instance settings once, when the
 * backend is built. Every error names the key as "backends.<instance>.<key>".
 */
import { isAbsolute, normalize } from 'node:path';
import { invalidArgument } from '../core/errors.js';
import { parseSize } from '../core/spec.js';
import { didYouMean } from '../core/suggest.js';

export function settingField(instance: string, key: string): string {
  return `backends.${instance}.${key}`;
}

/** Refuses keys outside `known` ("driver" is always allowed: the config names the driver with it). */
export function checkKnownKeys(instance: string, raw: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (key === 'driver' || known.includes(key)) continue;
    throw invalidArgument(settingField(instance, key), `unknown setting${didYouMean(key, known)} (known: ${known.join(', ') || 'none'})`);
  }
}

/** An absolute directory setting, normalised without a trailing slash; `fallback` when absent. */
export function pathSetting(instance: string, raw: Readonly<Record<string, unknown>>, key: string, fallback: string): string {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string' || v === '' || v.includes('\0') || !isAbsolute(v)) {
    throw invalidArgument(settingField(instance, key), `must be an absolute path, got ${JSON.stringify(v)}`);
  }
  return normalize(v).replace(/(.)\/$/, '$1');
}

/**
 * `shared: true`: the instance's storage is reachable at the same path from every node (a
 * path on NFS, CephFS or GlusterFS mounted on every node, or a SAN), so in cluster mode its
 * volumes can be used from any node. Such an instance must name its root: a default under
 * one node's state root is that node's alone.
 */
export function sharedSetting(instance: string, raw: Readonly<Record<string, unknown>>): boolean {
  const v = raw['shared'];
  if (v === undefined || v === null || v === false) return false;
  if (v !== true) throw invalidArgument(settingField(instance, 'shared'), `must be true or false, got ${JSON.stringify(v)}`);
  if (raw['root'] === undefined || raw['root'] === null) {
    throw invalidArgument(settingField(instance, 'root'), 'a shared instance needs its root set: a path every node reaches at the same place');
  }
  return true;
}

/** A size setting ("1GiB", "10G" or bytes); `fallback` when absent. */
export function sizeSetting(instance: string, raw: Readonly<Record<string, unknown>>, key: string, fallback: number): number {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string' && typeof v !== 'number') throw invalidArgument(settingField(instance, key), 'must be a size such as "1GiB"');
  return parseSize(v, settingField(instance, key));
}

/** One of `allowed`; `fallback` when absent. */
export function choiceSetting<T extends string>(
  instance: string,
  raw: Readonly<Record<string, unknown>>,
  key: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw invalidArgument(settingField(instance, key), `${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
}
