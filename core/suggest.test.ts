import { describe, expect, it } from 'vitest';
import { closest, didYouMean } from './suggest.js';

describe('closest / didYouMean', () => {
  it('suggests only plausible typos, ignoring case', () => {
    expect(closest('sockt', ['socket', 'tcp'])).toBe('socket');
    expect(closest('SOCKET', ['socket', 'tcp'])).toBe('socket');
    expect(closest('zzzzzzzz', ['socket', 'tcp'])).toBeNull();
    expect(closest('x', [])).toBeNull();
  });

  it('renders the suggestion as a message tail, or nothing', () => {
    expect(didYouMean('discrad', ['discard'])).toBe('; did you mean "discard"?');
    expect(didYouMean('size', ['discard'])).toBe('');
  });
});
