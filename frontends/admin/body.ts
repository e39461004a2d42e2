/**
 * Admin request bodies: JSON text -> the fields of one route, checked by a zod schema, on
 * the body's own data only.
 *
 * Own data only, structurally: the JSON is parsed into null-prototype objects, so a field is
 * found only when the sender wrote it, never through Object.prototype. `toString`,
 * `hasOwnProperty` and `__proto__` are then ordinary unknown keys (a strict schema names
 * them), and `{"__proto__":{"size":"1GiB"}}` sets nothing. Maps of user strings (labels,
 * options) keep every key as data (setOwn), "__proto__" included, for the core to refuse
 * by name.
 *
 * Errors are InvalidArgument naming the field as the body spelled it ("size",
 * "labels.team", "mountFlags[2]", "body" for the body as a whole). A null value counts as
 * absent, as before the schemas.
 *
 * @example
 *   const b = parseBody('{"consumer":"c1"}', { consumer: str });  // { consumer: 'c1' }
 */
import { z } from 'zod';
import { invalidArgument, setOwn, type BerthError } from '../../core/index.js';

export const str = z.string({ error: 'must be a string' });
export const bool = z.boolean({ error: 'must be true or false' });
export const size = z.union([z.string(), z.number()], { error: 'must be a size such as "1GiB" or a number of bytes' });
export const strings = z.array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings' });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An object of string values, every key kept as an own key of a plain object. */
export const stringMap = z
  .custom<Record<string, unknown>>(isObject, { error: 'must be an object of string values' })
  .superRefine((map, ctx) => {
    for (const [k, v] of Object.entries(map)) {
      if (typeof v !== 'string') ctx.addIssue({ code: 'custom', message: 'must be a string', path: [k] });
    }
  })
  .transform((map) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(map)) setOwn(out, k, v as string);
    return out;
  });

export type Shape = Record<string, z.ZodType>;

/** The fields a body may carry, each absent when the body left it out or sent null. */
export type Fields<S extends Shape> = { [K in keyof S]?: NonNullable<z.output<S[K]>> };

/**
 * Parses and checks one request body. `optional`: an empty body means no fields.
 * @example parseBody('{"size":"2GiB"}', { size }) // { size: '2GiB' }
 */
export function parseBody<S extends Shape>(text: string, shape: S, optional = false): Fields<S> {
  const keys = Object.keys(shape);
  if (text.trim() === '') {
    if (optional) return {};
    throw invalidArgument('body', `a JSON object is required (keys: ${keys.join(', ')})`);
  }
  let body: unknown;
  try {
    body = parseOwnJson(text);
  } catch {
    throw invalidArgument('body', 'is not valid JSON');
  }
  if (!isObject(body)) throw invalidArgument('body', 'must be a JSON object');
  const schema = z.strictObject(Object.fromEntries(keys.map((k) => [k, shape[k]!.nullish()])));
  const result = schema.safeParse(body);
  if (!result.success) throw toBerthError(result.error.issues[0]!, keys);
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = (result.data as Record<string, unknown>)[k];
    if (v !== null && v !== undefined) out[k] = v;
  }
  return out as Fields<S>;
}

/** JSON.parse whose objects have no prototype: every lookup sees the sender's keys only. */
function parseOwnJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (!isObject(value)) return value;
    const own = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(value)) setOwn(own, k, value[k]);
    return own;
  });
}

/** "labels" + "team" -> "labels.team"; array indexes as "[2]". */
function fieldOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}

function toBerthError(issue: z.core.$ZodIssue, keys: readonly string[]): BerthError {
  if (issue.code === 'unrecognized_keys') {
    return invalidArgument(fieldOf([...issue.path, issue.keys[0]!]), `unknown field; allowed: ${keys.join(', ')}`);
  }
  return invalidArgument(fieldOf(issue.path), issue.message);
}
