/**
 * Test holds, for crash tests only: with BERTH_TEST_HOLDS=<unix socket> in the daemon's
 * environment, every backend step (create, attach, mount, unmount, detach, delete, ...)
 * reports itself on that socket before and after it runs and waits for an answer line.
 * The test answers at once, or holds the daemon right there (no answer) and kills it, so a
 * crash test kills the daemon exactly between the step and what the core records after
 * it, however busy the machine is, and fails when the step never came.
 *
 * Without the variable nothing is wrapped. With it and nothing listening on the socket,
 * every step goes on at once.
 *
 * @example
 *   const backends = env.BERTH_TEST_HOLDS ? withTestHolds(real, { socket: env.BERTH_TEST_HOLDS, log }) : real;
 */
import { connect } from 'node:net';
import type { Backend } from './backend.js';
import type { Logger } from './log.js';

/** The backend steps a test can hold the daemon at. */
export const HOLD_STEPS = [
  'create', 'delete', 'attach', 'detach', 'mount', 'unmount', 'expand',
  'createSnapshot', 'deleteSnapshot', 'createFromSnapshot', 'createFromVolume',
] as const;

export type HoldStep = (typeof HOLD_STEPS)[number];

/** What the daemon reports, one JSON line per point. */
export interface HoldPoint {
  readonly step: HoldStep;
  readonly when: 'before' | 'after';
  /** Backend instance name. */
  readonly backend: string;
  /** Volume (or snapshot) id and, for volumes, name. */
  readonly id: string;
  readonly name: string | null;
}

const isStep = (p: string | symbol): p is HoldStep => typeof p === 'string' && (HOLD_STEPS as readonly string[]).includes(p);

/** Reports the point and resolves on the test's answer, or at once when no test listens. */
function report(socket: string, point: HoldPoint): Promise<void> {
  return new Promise((resolve) => {
    const c = connect(socket);
    const go = () => {
      c.destroy();
      resolve();
    };
    c.on('connect', () => c.write(`${JSON.stringify(point)}\n`));
    c.on('data', go);
    c.on('error', go);
    c.on('close', go);
  });
}

/**
 * The same backends, each step reported to the test before and after it runs.
 * @example const held = withTestHolds(backends, { socket: '/tmp/t/holds.sock', log });
 */
export function withTestHolds(backends: ReadonlyMap<string, Backend>, o: { socket: string; log: Logger }): Map<string, Backend> {
  o.log.warn({ socket: o.socket }, 'BERTH_TEST_HOLDS is set: every backend step waits for a test on this socket (never set it outside tests)');
  const out = new Map<string, Backend>();
  for (const [name, backend] of backends) {
    out.set(name, new Proxy(backend, {
      get(target, prop, receiver) {
        const value: unknown = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function' || !isStep(prop)) return value;
        const step = prop;
        return async (...args: unknown[]) => {
          const subject = args[0] as { id: string; name?: string };
          const at = (when: HoldPoint['when']): HoldPoint => ({ step, when, backend: target.name, id: subject.id, name: subject.name ?? null });
          await report(o.socket, at('before'));
          const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          await report(o.socket, at('after'));
          return result;
        };
      },
    }));
  }
  return out;
}
