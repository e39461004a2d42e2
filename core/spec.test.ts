import { describe, expect, it } from 'vitest';
import { BerthError } from './errors.js';
import { formatSize, optionFieldNames, parseSize, parseVolumeOptions, validateVolumeName } from './spec.js';

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('InvalidArgument');
    return (err as BerthError).field;
  }
  throw new Error('expected InvalidArgument');
}

describe('validateVolumeName', () => {
  it.each(['a', 'pgdata', 'A-1_b.c', '0', 'x'.repeat(128)])('accepts %s', (name) => {
    expect(validateVolumeName(name)).toBe(name);
  });

  it.each([
    ['empty', ''],
    ['slash', 'a/b'],
    ['dotdot', '..'],
    ['leading dot', '.hidden'],
    ['leading dash', '-x'],
    ['NUL', 'a\0b'],
    ['space', 'a b'],
    ['too long', 'x'.repeat(129)],
    ['unicode', 'café'],
  ])('refuses %s naming the field', (_, name) => {
    expect(fieldOf(() => validateVolumeName(name))).toBe('name');
    expect(fieldOf(() => validateVolumeName(name, 'Name'))).toBe('Name');
  });

  it('refuses non-strings', () => {
    expect(fieldOf(() => validateVolumeName(42))).toBe('name');
    expect(fieldOf(() => validateVolumeName(undefined))).toBe('name');
  });
});

describe('parseSize', () => {
  it.each<[string | number, number]>([
    ['512MiB', 512 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['1gib', 2 ** 30],
    ['2Ti', 2 * 2 ** 40],
    ['4KiB', 4096],
    ['10G', 10e9],
    ['10GB', 10e9],
    ['64M', 64e6],
    ['1k', 1000],
    ['1T', 1e12],
    ['1048576', 1048576],
    ['100B', 100],
    [' 7 MiB ', 7 * 2 ** 20],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['0', 0],
    [4096, 4096],
    [String(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
  ])('parses %s', (input, bytes) => {
    expect(parseSize(input, 'size')).toBe(bytes);
  });

  it.each<[string | number]>([
    ['-1'], ['-1GiB'], [-5], ['0.5'], ['1.3B'], [1.5], ['abc'], ['10 parsecs'], ['1GiBx'], ['GiB'], [''], ['1e9'],
    [NaN], ['0x10'], ['1 constructor'], ['1 hasOwnProperty'],
  ])('refuses %s naming the field', (input) => {
    expect(fieldOf(() => parseSize(input, 'opts.size'))).toBe('opts.size');
  });

  it('refuses 100,000 fraction digits as not whole without arithmetic on them', () => {
    const input = `0.${'1'.repeat(100_000)}GiB`;
    expect(fieldOf(() => parseSize(input, 'opts.size'))).toBe('opts.size');
  });

  it.each<[string, string | number]>([
    ['9007199254740992', '9007199254740992'], ['9000000T', '9000000T'], ['8192TiB', '8192TiB'],
    ['2^53 as a number', Number.MAX_SAFE_INTEGER + 1], ['Infinity', Infinity], ['1e300', 1e300],
    ['a million nines', '9'.repeat(1_000_000)], ['2^53 after 100,000 zeros', `${'0'.repeat(100_000)}9007199254740992`],
  ])('refuses %s as OutOfRange (past what a JS number holds exactly), naming the field', (_, input) => {
    const started = performance.now();
    expect(() => parseSize(input, 'opts.size')).toThrow(expect.objectContaining({ kind: 'OutOfRange', field: 'opts.size' }));
    // A megabyte of digits is refused by counting them, not by arithmetic on them.
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('keeps leading zeros and trailing fraction zeros harmless', () => {
    expect(parseSize(`${'0'.repeat(1000)}64MiB`, 'size')).toBe(64 * 2 ** 20);
    expect(parseSize(`1.5${'0'.repeat(1000)}GiB`, 'size')).toBe(1.5 * 2 ** 30);
    expect(parseSize(`8191.9999999999990905052982270717620849609375TiB`, 'size')).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('quotes a bad size in its message clipped to one short printable line', () => {
    let message = '';
    try {
      parseSize(`x\n${'y'.repeat(100_000)}`, 'size');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^size: "x\\x0ay+\.\.\.\(\d+ more characters\)" is not a size/);
    expect(message.length).toBeLessThan(400);
  });

  it('round-trips through formatSize', () => {
    for (const n of [1, 1000, 1024, 64 * 2 ** 20, 3 * 2 ** 30, 5 * 2 ** 40, 123456789]) {
      expect(parseSize(formatSize(n), 'size')).toBe(n);
    }
    expect(formatSize(2 ** 30)).toBe('1GiB');
    expect(formatSize(1536)).toBe('1536B');
    expect(formatSize(0)).toBe('0');
  });
});

describe('parseVolumeOptions', () => {
  it('maps known keys and passes the rest to options', () => {
    expect(
      parseVolumeOptions({
        size: '1GiB', fs: 'xfs', backend: 'fast', mode: 'block', accessMode: 'ReadOnlyMany',
        'label.team': 'db', 'label.app.kubernetes.io/name': 'pg', tier: 'gold', fromSnapshot: 'snap1',
      }),
    ).toEqual({
      sizeBytes: 2 ** 30, fsType: 'xfs', backend: 'fast', volumeMode: 'block', accessMode: 'ReadOnlyMany',
      labels: { team: 'db', 'app.kubernetes.io/name': 'pg' }, options: { tier: 'gold' },
      source: { kind: 'snapshot', ref: 'snap1' },
    });
  });

  it('accepts fsType and fromVolume, and empty input', () => {
    expect(parseVolumeOptions({ fsType: 'btrfs', fromVolume: 'v1' })).toEqual({ fsType: 'btrfs', source: { kind: 'volume', ref: 'v1' } });
    expect(parseVolumeOptions(null)).toEqual({});
    expect(parseVolumeOptions(undefined)).toEqual({});
    expect(parseVolumeOptions({})).toEqual({});
  });

  it.each<[Record<string, unknown>, string]>([
    [{ size: 'lots' }, 'opts.size'],
    [{ fs: 'ntfs' }, 'opts.fs'],
    [{ fsType: 'vfat' }, 'opts.fsType'],
    [{ mode: 'raw' }, 'opts.mode'],
    [{ accessMode: 'ReadWriteSometimes' }, 'opts.accessMode'],
    [{ backend: '../etc' }, 'opts.backend'],
    [{ 'label.': 'x' }, 'opts.label.'],
    [{ 'label.-bad': 'x' }, 'opts.label.-bad'],
    [{ 'label.ok': { nested: true } }, 'opts.label.ok'],
    [{ 'bad key': 'x' }, 'opts.bad key'],
    [{ tier: 'a\0b' }, 'opts.tier'],
    [{ fromSnapshot: 's', fromVolume: 'v' }, 'opts.fromVolume'],
    [{ fs: 'ext4', fsType: 'xfs' }, 'opts.fsType'],
  ])('refuses %j naming %s', (opts, field) => {
    expect(fieldOf(() => parseVolumeOptions(opts))).toBe(field);
  });

  it('uses the given field prefix', () => {
    expect(fieldOf(() => parseVolumeOptions({ size: '-1' }, 'parameters'))).toBe('parameters.size');
  });
});

describe('optionFieldNames', () => {
  it('names each typed field after the key the user typed, with the prefix', () => {
    expect(optionFieldNames({ fsType: 'xfs', backend: 'loop', size: '1G', volumeMode: 'block', tier: 'gold', 'label.a': 'b' })).toEqual({
      fs: 'opts.fsType', backend: 'opts.backend', size: 'opts.size', mode: 'opts.volumeMode',
    });
    expect(optionFieldNames({ fromVolume: 'v', accessMode: 'ReadWriteMany' }, 'parameters')).toEqual({
      fromVolume: 'parameters.fromVolume', accessMode: 'parameters.accessMode',
    });
    expect(optionFieldNames({ constructor: 'x', toString: 'y' })).toEqual({});
    expect(optionFieldNames(null)).toEqual({});
  });
});
