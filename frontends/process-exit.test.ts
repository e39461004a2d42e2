import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { exitWhenFlushed, ignoreClosedReaders, type OutputStream } from './process-exit.js';

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
