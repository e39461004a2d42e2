import { describe, expect, it } from 'vitest';
import { BerthError, invalidArgument, MAX_MESSAGE_CHARS } from './errors.js';
import { clip, CLIP_CHARS, setOwn, truncate } from './user-input.js';

describe('clip', () => {
  it('keeps a short printable string as it is', () => {
    expect(clip('pvc-1234')).toBe('pvc-1234');
    expect(clip('x'.repeat(CLIP_CHARS))).toBe('x'.repeat(CLIP_CHARS));
  });

  it('cuts a long string and says how much was cut', () => {
    const out = clip('v'.repeat(1_000_000));
    expect(out).toBe(`${'v'.repeat(CLIP_CHARS)}...(${1_000_000 - CLIP_CHARS} more characters)`);
    expect(clip('abcdef', 3)).toBe('abc...(3 more characters)');
  });

  it('escapes control characters so the result is one line', () => {
    expect(clip('a\nb\x1b[31m\0')).toBe('a\\x0ab\\x1b[31m\\x00');
  });

  it('never ends inside a surrogate pair', () => {
    const out = clip(`ab${'😀'.repeat(10)}`, 3);
    expect(out.startsWith('ab...')).toBe(true);
    expect(out).toBe('ab...(20 more characters)');
  });
});

describe('truncate', () => {
  it('cuts without escaping', () => {
    expect(truncate('a\nbcdef', 3)).toBe('a\nb...(4 more characters)');
    expect(truncate('abc', 3)).toBe('abc');
  });
});

describe('BerthError bounds', () => {
  it('keeps every message and field a few KB, whatever was embedded in it', () => {
    const huge = 'v'.repeat(1_000_000);
    const e = new BerthError('NotFound', `volume ${huge} does not exist`, { field: `labels.${huge}` });
    expect(e.message.length).toBeLessThan(MAX_MESSAGE_CHARS + 50);
    expect(e.message).toMatch(/^volume v+\.\.\.\(\d+ more characters\)$/);
    expect(e.field!.length).toBeLessThan(600);
    expect(invalidArgument(huge, 'unknown field').message.length).toBeLessThan(MAX_MESSAGE_CHARS + 50);
  });

  it('leaves ordinary messages untouched', () => {
    expect(new BerthError('InvalidArgument', 'size: "12XB" is not a size', { field: 'size' }).toJSON())
      .toEqual({ kind: 'InvalidArgument', message: 'size: "12XB" is not a size', field: 'size' });
  });
});

describe('setOwn', () => {
  it('keeps "__proto__" as an own key holding data, where assignment would drop it or change the prototype', () => {
    const assigned: Record<string, unknown> = {};
    assigned['__proto__'] = 'x';
    expect(Object.keys(assigned)).toEqual([]); // the bug setOwn exists for

    const map: Record<string, unknown> = {};
    setOwn(map, '__proto__', { size: '64MiB' });
    setOwn(map, 'toString', 'y');
    expect(Object.keys(map)).toEqual(['__proto__', 'toString']);
    expect(Object.getPrototypeOf(map)).toBe(Object.prototype);
    expect((map as { size?: unknown }).size).toBeUndefined();
    expect(JSON.parse(JSON.stringify(map))).toEqual(JSON.parse('{"__proto__":{"size":"64MiB"},"toString":"y"}'));
  });

  it('still overwrites like assignment', () => {
    const map: Record<string, string> = { a: '1' };
    setOwn(map, 'a', '2');
    expect(map).toEqual({ a: '2' });
  });
});
