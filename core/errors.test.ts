import { describe, expect, it } from 'vitest';
import { asBerthError, BerthError, internal, noSpace } from './errors.js';

const errno = (code: string, syscall: string, path: string) =>
  Object.assign(new Error(`${code}: something, ${syscall} '${path}'`), { code, syscall, path });

describe('asBerthError: a full filesystem is ResourceExhausted, naming where', () => {
  it('an ENOSPC / EDQUOT from an fs call', () => {
    const e = asBerthError(errno('ENOSPC', 'mkdir', '/srv/b/vol-1'));
    expect(e).toMatchObject({ kind: 'ResourceExhausted' });
    expect(e.message).toContain('/srv/b/vol-1');
    expect(asBerthError(errno('EDQUOT', 'write', '/q/f')).kind).toBe('ResourceExhausted');
  });

  it('the path is added when the message does not name it', () => {
    const err = Object.assign(new Error('no space left on device'), { code: 'ENOSPC', path: '/a/b' });
    expect(asBerthError(err).message).toBe('no space left on device (/a/b)');
  });

  it('an Internal error whose cause is a full disk (a backend wrapped it), or a command that said so', () => {
    const wrapped = internal('copying volume vol-1 failed: ENOSPC', errno('ENOSPC', 'copyfile', '/x'));
    expect(asBerthError(wrapped)).toMatchObject({ kind: 'ResourceExhausted', message: expect.stringContaining('copying volume vol-1') });
    const cmd = new Error("cp -a -- /s/. /d.partial exited with 1: cp: error writing '/d.partial/f': No space left on device");
    expect(asBerthError(cmd)).toMatchObject({ kind: 'ResourceExhausted', message: expect.stringContaining('/d.partial/f') });
    expect(asBerthError(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' })).kind).toBe('ResourceExhausted');
  });

  it('leaves every other error as it was', () => {
    expect(asBerthError(new Error('EIO')).kind).toBe('Internal');
    const nf = new BerthError('NotFound', 'no such volume: No space left on device is in its name');
    expect(asBerthError(nf)).toBe(nf);
    expect(noSpace(errno('EACCES', 'open', '/x'))).toBeNull();
  });
});
