import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFakeBackend, LOOP_LIKE } from '../test/fake/fake.js';
import { createSilentLogger } from './log.js';
import { withTestHolds, type HoldPoint } from './test-holds.js';
import { canAttach } from './backend.js';

const vol = { id: 'vol-1', name: 'v1', sizeBytes: 64 * 2 ** 20, fsType: 'ext4' as const, volumeMode: 'filesystem' as const, options: {} };

describe('test holds (BERTH_TEST_HOLDS)', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports each backend step before and after it runs, and waits for the answer', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-holds-'));
    const socket = join(dir, 'holds.sock');
    const seen: HoldPoint[] = [];
    let hold!: (c: Socket) => void;
    const held = new Promise<Socket>((r) => (hold = r));
    const server = createServer((c) => {
      c.once('data', (b: Buffer) => {
        const p = JSON.parse(b.toString()) as HoldPoint;
        seen.push(p);
        if (p.step === 'create' && p.when === 'after') hold(c); // no answer yet
        else c.end('go\n');
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      const fake = createFakeBackend({ name: 'fast', capabilities: LOOP_LIKE });
      const b = withTestHolds(new Map([['fast', fake]]), { socket, log: createSilentLogger() }).get('fast')!;
      expect(b.name).toBe('fast'); // everything else passes through
      expect(b.capabilities.attachable).toBe(true);

      let created = false;
      const creating = b.create(vol).then(() => (created = true));
      const c = await held;
      expect(fake.callsTo('create')).toEqual(['vol-1']); // the step ran; the caller waits after it
      expect(created).toBe(false);
      c.end('go\n');
      await creating;
      expect(seen).toEqual([
        { step: 'create', when: 'before', backend: 'fast', id: 'vol-1', name: 'v1' },
        { step: 'create', when: 'after', backend: 'fast', id: 'vol-1', name: 'v1' },
      ]);
      // Reads are not steps: never reported.
      await b.inspect(vol);
      expect(seen).toHaveLength(2);
    } finally {
      server.close();
    }
  });

  it('goes on at once when no test listens', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-holds-'));
    const fake = createFakeBackend({ name: 'fast', capabilities: LOOP_LIKE });
    const b = withTestHolds(new Map([['fast', fake]]), { socket: join(dir, 'nobody.sock'), log: createSilentLogger() }).get('fast')!;
    await b.create(vol);
    if (!canAttach(b)) throw new Error('a loop-like fake attaches');
    await expect(b.attach(vol, { node: 'node-1' })).resolves.toMatchObject({ device: expect.any(String) });
  });
});
