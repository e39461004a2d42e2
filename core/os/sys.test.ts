// The addon itself: its own argument checks, errno per call under concurrency, and the
// promise that a call hung in the kernel holds only its own thread. The hang is real: a FUSE
// mount under the test root whose /dev/fuse descriptor nobody answers (every statfs of it
// waits in the kernel until that descriptor is closed).
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { useTmpRoots } from '../../test/helpers/tmp-root.js';
import { isSysCallError, nativeOs, sysCall } from './sys.js';

describe('system-call addon', () => {
  const roots = useTmpRoots();
  const os = nativeOs();

  it('refuses bad arguments synchronously, before a thread starts', () => {
    const root = '/nonexistent-berth-sys-test';
    expect(() => os.bind('relative', `${root}/b`, 0, 0)).toThrow(/source must be an absolute path/);
    expect(() => os.bind(`${root}/a\0b`, `${root}/b`, 0, 0)).toThrow(/must not contain NUL/);
    expect(() => os.bind(`${root}/a`, `/${'x'.repeat(5000)}`, 0, 0)).toThrow(/target must be 1 to 4095 bytes/);
    expect(() => os.bind(`${root}/a`, `${root}/b`, 0x1000, 0)).toThrow(/attrSet has bits outside/);
    expect(() => os.mount('x', `${root}/b`, 'tmpfs', 4096 /* MS_BIND */, null)).toThrow(/flags has bits outside/);
    expect(() => os.umount(`${root}/b`, 1 /* MNT_FORCE */)).toThrow(/flags has bits outside/);
    expect(() => os.umount(`${root}/b`, 1.5)).toThrow(/whole number/);
    expect(() => os.loopDetach('/dev/sda')).toThrow(/\/dev\/loop<N>/);
    expect(() => os.loopAttach(`${root}/i.img`, 2 as unknown as boolean)).toThrow(/readOnly/);
    expect(() => os.fsShutdown(`${root}/m`, 3, null, null)).toThrow(/how must be a whole number from 0 to 2/);
    expect(() => (os.statfs as unknown as (p: unknown) => unknown)(42)).toThrow(/path must be a string/);
  });

  it('gives every concurrent call its own errno and failing step', async () => {
    const root = roots.create('sys-errno');
    const calls = Array.from({ length: 40 }, (_, i) =>
      i % 2 ? os.umount(root.dir, 0) : os.bind(root.path(`missing-${i}`), root.dir, 0, 0),
    );
    const errs = await Promise.all(calls.map((p) => p.then(() => null, (e: unknown) => e)));
    errs.forEach((e, i) => {
      expect(isSysCallError(e)).toBe(true);
      expect(e).toMatchObject(i % 2 ? { code: 'EINVAL', errno: 22, syscall: 'umount2' } : { code: 'ENOENT', errno: 2, syscall: 'open_tree' });
    });
  });

  it('a call hung in the kernel holds only its own thread: the event loop, fs/promises and other calls go on', async () => {
    const root = roots.create('sys-hang');
    const mnt = root.path('fuse');
    mkdirSync(mnt);
    const fuse = openSync('/dev/fuse', 'r+');
    let open = true;
    root.defer(() => open && closeSync(fuse));
    await os.mount('berth-test', mnt, 'fuse', 0, `fd=${fuse},rootmode=40000,user_id=0,group_id=0`);
    root.defer(() => os.umount(mnt, os.constants.MNT_DETACH).catch(() => undefined));

    // More hung calls than libuv has pool threads (4): were they on the pool, the reads below would wait forever.
    const inKernel: Array<Promise<unknown>> = []; // the calls themselves, past their deadlines
    const hung = Array.from({ length: 8 }, (_, i) => sysCall(`statfs of the unanswered FUSE mount #${i}`, (o) => {
      const call = o.statfs(mnt);
      inKernel.push(call.then(() => 'answered', (e: { code?: string }) => e.code));
      return call;
    }, 300));
    const [text, own, st] = await Promise.all([readFile(new URL(import.meta.url), 'utf8'), sysCall('statfs of the root', (o) => o.statfs(root.dir)), stat(root.dir)]);
    expect(text).toContain('holds only its own thread');
    expect(own.bsize).toBeGreaterThan(0);
    expect(st.isDirectory()).toBe(true);
    for (const h of hung) {
      await expect(h).rejects.toMatchObject({ kind: 'Internal', message: expect.stringMatching(/^statfs of the unanswered FUSE mount #\d did not return within 300 ms: the kernel is still in the call/) });
    }
    // Closing the FUSE descriptor aborts the connection: the hung calls return and their threads end.
    const late = os.statfs(mnt).then(() => 'answered', (e: { code?: string }) => e.code);
    closeSync(fuse);
    open = false;
    expect(await late).toBe('ENOTCONN');
    expect(await Promise.all(inKernel)).toEqual(Array(8).fill('ENOTCONN'));
    await os.umount(mnt, 0); // every thread is out of the mount: not busy
  });
});
