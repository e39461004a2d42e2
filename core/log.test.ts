import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { afterTurn } from './log.js';

const turn = () => new Promise<void>((r) => setImmediate(r));

describe('afterTurn: a turn\'s log lines, written together after it', () => {
  it('holds the lines of a turn and writes them once, in order, after it', async () => {
    const writes: string[] = [];
    const log = pino({ base: null, timestamp: false }, afterTurn({ write: (t) => writes.push(t) }, () => undefined));
    log.info('one');
    log.warn('two');
    expect(writes).toEqual([]);
    await turn();
    expect(writes.map((w) => w.split('\n').filter(Boolean).map((l) => JSON.parse(l).msg))).toEqual([['one', 'two']]);
    log.info('three');
    await turn();
    expect(writes).toHaveLength(2);
    expect(JSON.parse(writes[1]!).msg).toBe('three');
  });

  it('writes what it holds at exit, and nothing twice', async () => {
    const writes: string[] = [];
    let atExit: () => void = () => undefined;
    const dest = afterTurn({ write: (t) => writes.push(t) }, (f) => (atExit = f));
    dest.write('a\n');
    atExit();
    expect(writes).toEqual(['a\n']);
    await turn();
    atExit();
    expect(writes).toEqual(['a\n']);
  });
});
