// errno -> typed error, for the codes a test cannot produce safely on a shared machine:
// ENOSPC from mount(2) needs the global fs.mount-max sysctl lowered, ENOMEM a kernel out of
// memory. Every other mapped code is produced for real in mounts/loop/block/sys tests.
import { describe, expect, it } from 'vitest';
import { BerthError } from '../errors.js';
import { sysError } from './sys-errors.js';

const sysErr = (code: string, errno: number, syscall: string) => Object.assign(new Error(`${syscall}: ... (${code})`), { code, errno, syscall });

describe('sysError', () => {
  it('maps ENOSPC, ENOMEM, EMFILE and ENFILE to ResourceExhausted, naming the action and the call', () => {
    expect(sysError(sysErr('ENOSPC', 28, 'mount (bind)'), { action: 'bind-mounting /a on /b' })).toMatchObject({
      kind: 'ResourceExhausted', message: 'bind-mounting /a on /b failed: no space left (too many mounts or loop devices?) (ENOSPC from mount (bind))',
    });
    expect(sysError(sysErr('ENOMEM', 12, 'LOOP_CONFIGURE'), { action: 'attaching /i.img to a loop device' })).toMatchObject({
      kind: 'ResourceExhausted', message: 'attaching /i.img to a loop device failed: the kernel is out of memory (ENOMEM from LOOP_CONFIGURE)',
    });
    expect(sysError(sysErr('EMFILE', 24, 'open the image'), { action: 'x' }).kind).toBe('ResourceExhausted');
    expect(sysError(sysErr('ENFILE', 23, 'open the image'), { action: 'x' }).kind).toBe('ResourceExhausted');
  });

  it('keeps the caller\'s words and kinds over the defaults, and EINVAL takes the operation\'s hint', () => {
    expect(sysError(sysErr('EBUSY', 16, 'LOOP_CONFIGURE'), { action: 'a', reasons: { EBUSY: 'taken' }, kinds: { EBUSY: 'ResourceExhausted' } })).toMatchObject({
      kind: 'ResourceExhausted', message: 'a failed: taken (EBUSY from LOOP_CONFIGURE)',
    });
    expect(sysError(sysErr('EINVAL', 22, 'umount2'), { action: 'u', einval: 'not a mount point' }).message).toBe('u failed: invalid argument: not a mount point (EINVAL from umount2)');
  });

  it('passes a BerthError through and wraps anything else as Internal', () => {
    const typed = new BerthError('Busy', 'x');
    expect(sysError(typed, { action: 'a' })).toBe(typed);
    expect(sysError(new TypeError('boom'), { action: 'a' })).toMatchObject({ kind: 'Internal', message: 'a failed: boom' });
  });
});
