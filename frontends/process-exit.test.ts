import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { directOutput, exitWhenFlushed, ignoreClosedReaders, writeNow, type OutputStream, type WriteFn } from './process-exit.js';

/** A stream whose writes complete only when the test says so, like a pipe nobody reads yet. */
function slowStream(): OutputStream & { flush(): void; written: string[] } {
  const e = new EventEmitter();
  const pending: Array<() => void> = [];
  const written: string[] = [];
  return Object.assign(e, {
    writable: true,
    destroyed: false,
    written,
    write(chunk: string, cb?: () => void) {
      written.push(chunk);
      if (cb) pending.push(cb);
      return false;
    },
    flush() {
      for (const cb of pending.splice(0)) cb();
    },
  }) as unknown as OutputStream & { flush(): void; written: string[] };
}

describe('exitWhenFlushed', () => {
  it('exits only after every stream has completed its earlier writes', () => {
    const out = slowStream();
    const err = slowStream();
    const exits: number[] = [];
    out.write('a big reply');
    exitWhenFlushed(3, [out, err], (c) => exits.push(c));
    expect(exits).toEqual([]);
    out.flush();
    expect(exits).toEqual([]);
    err.flush();
    expect(exits).toEqual([3]);
    process.exitCode = 0;
  });

  it('does not wait on a stream that is already closed', () => {
    const out = Object.assign(slowStream(), { destroyed: true });
    const exits: number[] = [];
    exitWhenFlushed(0, [out], (c) => exits.push(c));
    expect(exits).toEqual([0]);
  });
});

describe('ignoreClosedReaders', () => {
  it('swallows EPIPE (the reader went away) and rethrows anything else', () => {
    const out = slowStream();
    ignoreClosedReaders([out]);
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    expect(() => (out as unknown as EventEmitter).emit('error', epipe)).not.toThrow();
    const eio = Object.assign(new Error('write EIO'), { code: 'EIO' });
    expect(() => (out as unknown as EventEmitter).emit('error', eio)).toThrow('EIO');
  });
});

/** A descriptor that takes at most `room` bytes per write, then fails with `then` once full. */
function fakeFd(room: number, capacity: number, then: string): WriteFn & { got: Buffer[] } {
  const got: Buffer[] = [];
  let taken = 0;
  const fn = ((_fd: number, buf: Buffer, off: number) => {
    if (taken >= capacity) throw Object.assign(new Error(`write ${then}`), { code: then });
    const n = Math.min(room, buf.length - off, capacity - taken);
    got.push(Buffer.from(buf.subarray(off, off + n)));
    taken += n;
    return n;
  }) as WriteFn & { got: Buffer[] };
  fn.got = got;
  return fn;
}

describe('writeNow', () => {
  it('writes everything, however few bytes each write(2) takes', () => {
    const fd = fakeFd(3, 1000, 'EAGAIN');
    expect(writeNow(1, 'größe: 64MiB\n', fd).length).toBe(0);
    expect(Buffer.concat(fd.got).toString()).toBe('größe: 64MiB\n');
    expect(fd.got.length).toBeGreaterThan(3);
  });

  it('returns the bytes a full non-blocking pipe refused, for a stream to finish', () => {
    const fd = fakeFd(4, 6, 'EAGAIN');
    const rest = writeNow(1, 'abcdefghij', fd);
    expect(Buffer.concat(fd.got).toString()).toBe('abcdef');
    expect(rest.toString()).toBe('ghij');
  });

  it('drops the rest when the reader went away or there is no descriptor, and throws anything else', () => {
    expect(writeNow(1, 'abcdefghij', fakeFd(4, 4, 'EPIPE')).length).toBe(0);
    expect(writeNow(2, 'abc', fakeFd(4, 0, 'EBADF')).length).toBe(0);
    expect(() => writeNow(1, 'abc', fakeFd(4, 0, 'EIO'))).toThrow('EIO');
  });
});

describe('directOutput', () => {
  it('exits at once with the code when every write went straight through', () => {
    const fd = fakeFd(64, 1000, 'EAGAIN');
    const exits: number[] = [];
    const o = directOutput(fd, (c) => exits.push(c));
    o.out(2, 'level=info msg=x\n');
    o.out(1, '/var/lib/berth/mounts/v/data\n');
    expect(exits).toEqual([]);
    o.exit(4);
    expect(exits).toEqual([4]);
    expect(Buffer.concat(fd.got).toString()).toBe('level=info msg=x\n/var/lib/berth/mounts/v/data\n');
    process.exitCode = 0;
  });
});
