import { describe, expect, it } from 'vitest';
import { BerthError, ERROR_KINDS, invalidArgument, inUse } from '../../core/errors.js';
import { createSilentLogger } from '../../core/log.js';
import { dockerErrorMessage, toDockerError } from './errors.js';

describe('toDockerError', () => {
  it('gives every kind a non-empty message that keeps the original text', () => {
    for (const kind of ERROR_KINDS) {
      const msg = dockerErrorMessage(new BerthError(kind, `boom-${kind}`));
      expect(msg).toContain(`boom-${kind}`);
    }
  });

  it('keeps the field name of InvalidArgument so Docker users see the bad option', () => {
    expect(toDockerError(invalidArgument('opts.size', 'unknown unit "parsecs"')).Err).toBe(
      'invalid argument: opts.size: unknown unit "parsecs"',
    );
  });

  it('tells the user what to do about InUse', () => {
    expect(toDockerError(inUse('volume v is mounted by csi:/t')).Err).toMatch(/mounted by csi:\/t.*stop/);
  });

  it('turns anything else into an internal error pointing at the log', () => {
    const r = toDockerError(new TypeError('x is undefined'), createSilentLogger());
    expect(r.Err).toBe('internal error: x is undefined (see the berth daemon log)');
  });
});
