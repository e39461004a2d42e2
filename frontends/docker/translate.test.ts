import { describe, expect, it } from 'vitest';
import type { BackendInfo } from '../../core/index.js';
import { consumerFor, parseBody, rfc3339, scopeOf } from './translate.js';

const backend = (scope: 'local' | 'global'): BackendInfo => ({
  name: scope, driver: 'x', settings: {},
  capabilities: { sizeEnforced: false, block: false, snapshots: false, clones: false, expansion: 'none', fsTypes: [], attachable: false, scope },
});

describe('translate', () => {
  it('parses empty, whitespace, null and newline-terminated bodies', () => {
    expect(parseBody('')).toEqual({});
    expect(parseBody(' \n')).toEqual({});
    expect(parseBody('null')).toEqual({});
    expect(parseBody('{"Name":"v"}\n')).toEqual({ Name: 'v' });
    expect(() => parseBody('"v"')).toThrow(/body: request body must be a JSON object/);
  });

  it('maps Docker mount IDs to one consumer each and no ID to the shared dvdcli reference', () => {
    expect(consumerFor({ ID: 'abc' })).toEqual({ consumer: 'docker:abc', frontend: 'docker' });
    expect(consumerFor({})).toEqual({ consumer: 'dvdcli', frontend: 'dvdcli' });
    expect(consumerFor({ ID: null })).toEqual({ consumer: 'dvdcli', frontend: 'dvdcli' });
  });

  it('formats CreatedAt as RFC 3339 that Go parses (no milliseconds)', () => {
    expect(rfc3339('2024-05-06T07:08:09.123Z')).toBe('2024-05-06T07:08:09Z');
  });

  it('answers global scope only when every backend is global', () => {
    expect(scopeOf([backend('local')])).toBe('local');
    expect(scopeOf([backend('global'), backend('local')])).toBe('local');
    expect(scopeOf([backend('global')])).toBe('global');
    expect(scopeOf([])).toBe('local');
  });
});
