/**
 * The test side of core/test-holds.ts: a socket the daemon reports every backend step to
 * (pass `holds.env` to startTestDaemon). Every point is answered at once, except the one a
 * test armed with holdAt(): that one gets no answer, so the daemon stays right there until
 * the test kills it. No polling, no timing: a crash test kills where it says it does.
 *
 *   const holds = await createHoldServer(root);
 *   const d = await startTestDaemon(root, { env: holds.env });
 *   const at = holds.holdAt({ step: 'mount', when: 'after', id: v.id });
 *   const op = sendOnly(d, 'POST', `/v1/volumes/${v.id}/mount`, { consumer: 'c' });
 *   await reached(at, op.done);    // throws when the mount finished without the point
 *   await d.kill('SIGKILL');
 */
import { createServer, type Socket } from 'node:net';
import type { HoldPoint } from '../../core/test-holds.js';
import type { TmpRoot } from './tmp-root.js';

export type { HoldPoint };

export interface HoldServer {
  /** Environment for the daemon (startTestDaemon's `env`). */
  readonly env: Record<string, string>;
  /** Every point reported so far, in order. */
  readonly seen: readonly HoldPoint[];
  /** Holds the daemon at the next point that matches; resolves once it is held there. */
  holdAt(match: Partial<HoldPoint>): Promise<HoldPoint>;
}

const matches = (p: HoldPoint, m: Partial<HoldPoint>) =>
  (Object.keys(m) as Array<keyof HoldPoint>).every((k) => p[k] === m[k]);

/**
 * Listens on <root>/holds.sock until the root is cleaned up.
 * @example const holds = await createHoldServer(root);
 */
export async function createHoldServer(root: TmpRoot): Promise<HoldServer> {
  const socket = root.path('holds.sock');
  const seen: HoldPoint[] = [];
  const armed: Array<{ match: Partial<HoldPoint>; resolve: (p: HoldPoint) => void }> = [];
  const conns = new Set<Socket>();
  const server = createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => undefined); // the daemon killed while held
    let buf = '';
    c.on('data', (b: Buffer) => {
      buf += b.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const point = JSON.parse(buf.slice(0, nl)) as HoldPoint;
      seen.push(point);
      const i = armed.findIndex((a) => matches(point, a.match));
      if (i < 0) {
        c.end('go\n');
        return;
      }
      const [hit] = armed.splice(i, 1);
      hit!.resolve(point); // no answer: the daemon waits here
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  root.defer(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const c of conns) c.destroy();
  }));
  return {
    env: { BERTH_TEST_HOLDS: socket },
    seen,
    holdAt: (match) => new Promise((resolve) => armed.push({ match, resolve })),
  };
}

/**
 * Waits until the daemon is held at `at`; throws when the operation finished first (it did
 * not pass the point: a crash test must not quietly become a restart test).
 * @example const point = await reached(holds.holdAt({ step: 'create', when: 'after' }), op.done, holds);
 */
export async function reached(at: Promise<HoldPoint>, done: Promise<unknown>, holds: HoldServer): Promise<HoldPoint> {
  const first = await Promise.race([at.then((point) => ({ point })), done.then(() => null)]);
  if (!first) {
    const steps = holds.seen.map((p) => `${p.step}:${p.when}`).join(', ') || 'none';
    throw new Error(`the operation finished without reaching the kill point (backend steps seen: ${steps})`);
  }
  return first.point;
}
