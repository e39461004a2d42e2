/**
 * The CSI spec's size limits on request fields, checked on every RPC before its handler
 * runs (server.ts), so an oversized field is INVALID_ARGUMENT naming it and nothing else
 * ever sees it: not the core, not a log line, not an error message.
 *
 * The spec ("Size Limits"): a string at most 128 bytes, a map<string, string> at most
 * 4 KiB (its keys and values together). The proto overrides some fields: paths
 * (staging_target_path, target_path, volume_path) may be as long as the OS allows, so
 * PATH_MAX (4096 bytes) here; node_id up to 256 bytes; mount_flags 4 KiB in total.
 *
 * The walk is generic over the decoded request (proto-loader's plain objects): a field is
 * a path, a map or a plain string by its proto name, and messages and repeated fields are
 * walked into, so a field added to the proto is covered without a change here.
 * The whole message is bounded before decoding by the server's max receive length
 * (MAX_CSI_MESSAGE_BYTES, index.ts).
 *
 * @example checkRequestLimits({ volume_id: 'x'.repeat(200_000) }) // throws InvalidArgument naming volume_id
 */
import { invalidArgument } from '../../core/index.js';

/** The largest request message the server decodes; a CSI request is a few KB at most. */
export const MAX_CSI_MESSAGE_BYTES = 1024 * 1024;

export const CSI_STRING_BYTES = 128;
export const CSI_MAP_BYTES = 4 * 1024;
/** Linux PATH_MAX. */
export const CSI_PATH_BYTES = 4096;
export const CSI_NODE_ID_BYTES = 256;
export const CSI_MOUNT_FLAGS_BYTES = 4 * 1024;

const PATH_FIELDS = new Set(['staging_target_path', 'target_path', 'volume_path']);
const MAP_FIELDS = new Set(['parameters', 'secrets', 'volume_context', 'publish_context', 'mutable_parameters', 'segments']);

/** Throws InvalidArgument naming the first field over its limit ("volume_capability.mount.mount_flags"). */
export function checkRequestLimits(req: unknown): void {
  walk(req, '', '');
}

function walk(value: unknown, field: string, name: string): void {
  if (typeof value === 'string') {
    const limit = PATH_FIELDS.has(name) ? CSI_PATH_BYTES : name === 'node_id' ? CSI_NODE_ID_BYTES : CSI_STRING_BYTES;
    // A string of n UTF-16 units is at most 3n bytes: most are settled without counting.
    if (value.length * 3 > limit) check(Buffer.byteLength(value), limit, field, 'bytes');
  } else if (Array.isArray(value)) {
    if (name === 'mount_flags') {
      check(value.reduce<number>((n, v) => n + Buffer.byteLength(String(v)), 0), CSI_MOUNT_FLAGS_BYTES, field, 'bytes in total');
      return;
    }
    value.forEach((v, i) => walk(v, `${field}[${i}]`, name));
  } else if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (MAP_FIELDS.has(name)) {
      const bytes = entries.reduce<number>((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(String(v)), 0);
      check(bytes, CSI_MAP_BYTES, field, 'bytes of keys and values');
      return;
    }
    for (const [k, v] of entries) walk(v, field ? `${field}.${k}` : k, k);
  }
}

function check(bytes: number, limit: number, field: string, unit: string): void {
  if (bytes > limit) throw invalidArgument(field, `is ${bytes} ${unit}; CSI allows at most ${limit}`);
}
