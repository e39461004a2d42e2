import { describe, expect, it } from 'vitest';
import { BerthError } from '../../core/errors.js';
import { bool, parseBody, size, str, stringMap, strings } from './body.js';

const CREATE = { name: str, size, backend: str, labels: stringMap, options: stringMap };

function refusal(fn: () => unknown): { field: string | undefined; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('InvalidArgument');
    return { field: (err as BerthError).field, message: (err as BerthError).message };
  }
  throw new Error('expected InvalidArgument');
}

describe('parseBody', () => {
  it('returns the fields the body gave, a null counting as absent', () => {
    expect(parseBody('{"name":"a","size":"1GiB","backend":null}', CREATE)).toEqual({ name: 'a', size: '1GiB' });
    expect(parseBody('{"size":1048576}', { size })).toEqual({ size: 1048576 });
    expect(parseBody('{"readOnly":true,"mountFlags":["noatime"]}', { readOnly: bool, mountFlags: strings }))
      .toEqual({ readOnly: true, mountFlags: ['noatime'] });
    expect(parseBody('', { node: str }, true)).toEqual({});
    expect(parseBody('  \n', { node: str }, true)).toEqual({});
  });

  it.each([
    ['toString', '{"name":"a","toString":"x"}'],
    ['hasOwnProperty', '{"name":"a","hasOwnProperty":{}}'],
    ['constructor', '{"name":"a","constructor":{"name":"b"}}'],
    ['__proto__', '{"name":"a","__proto__":{"size":"64MiB","backend":"loop"}}'],
    ['valueOf', '{"valueOf":null}'],
  ])('refuses the Object.prototype key %s as an unknown field', (key, text) => {
    const r = refusal(() => parseBody(text, CREATE));
    expect(r.field).toBe(key);
    expect(r.message).toBe(`${key}: unknown field; allowed: name, size, backend, labels, options`);
  });

  it('never reads a field through a prototype', () => {
    // The reproduction: the payload under __proto__ must not become size/backend.
    expect(() => parseBody('{"name":"a","__proto__":{"size":"64MiB","backend":"loop"}}', CREATE)).toThrow(BerthError);
    // With the prototype key refused, nothing leaks into a later parse either.
    expect(parseBody('{"name":"a"}', CREATE)).toEqual({ name: 'a' });
    expect(({} as Record<string, unknown>).size).toBeUndefined();
  });

  it('keeps a map key "__proto__" as data, so the core can refuse it by name', () => {
    const b = parseBody('{"name":"a","labels":{"__proto__":"x","team":"db"},"options":{"__proto__":"y"}}', CREATE);
    expect(Object.keys(b.labels!)).toEqual(['__proto__', 'team']);
    expect(Object.getOwnPropertyDescriptor(b.labels!, '__proto__')?.value).toBe('x');
    expect(Object.getPrototypeOf(b.labels!)).toBe(Object.prototype);
    expect(Object.keys(b.options!)).toEqual(['__proto__']);
  });

  it.each([
    ['{"name":5}', 'name', 'name: must be a string'],
    ['{"size":true}', 'size', 'size: must be a size such as "1GiB" or a number of bytes'],
    ['{"labels":"x"}', 'labels', 'labels: must be an object of string values'],
    ['{"labels":["x"]}', 'labels', 'labels: must be an object of string values'],
    ['{"labels":{"k":1}}', 'labels.k', 'labels.k: must be a string'],
    ['{"options":{"a.b":{"c":"d"}}}', 'options.a.b', 'options.a.b: must be a string'],
    ['{"colour":"red"}', 'colour', 'colour: unknown field; allowed: name, size, backend, labels, options'],
  ])('refuses %s naming %s', (text, field, message) => {
    expect(refusal(() => parseBody(text, CREATE))).toEqual({ field, message });
  });

  it('names the element of an array field', () => {
    expect(refusal(() => parseBody('{"mountFlags":["ro",7]}', { mountFlags: strings }))).toEqual({
      field: 'mountFlags[1]', message: 'mountFlags[1]: must be a string',
    });
    expect(refusal(() => parseBody('{"mountFlags":"ro"}', { mountFlags: strings })).field).toBe('mountFlags');
    expect(refusal(() => parseBody('{"readOnly":"yes"}', { readOnly: bool }))).toEqual({
      field: 'readOnly', message: 'readOnly: must be true or false',
    });
  });

  it.each([
    ['', 'body: a JSON object is required (keys: name, size, backend, labels, options)'],
    ['{"name": ', 'body: is not valid JSON'],
    ['[1]', 'body: must be a JSON object'],
    ['null', 'body: must be a JSON object'],
    ['"x"', 'body: must be a JSON object'],
    ['['.repeat(200_000), 'body: is not valid JSON'],
  ])('refuses the body %j as a whole', (text, message) => {
    expect(refusal(() => parseBody(text, CREATE))).toEqual({ field: 'body', message });
  });
});
