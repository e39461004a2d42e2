/**
 * The fence agent (cluster mode): a small process of its own beside each node's daemon, so
 * that a node whose daemon died (kill -9) still counts as alive while its containers may
 * write, and can still be fenced (docs/architecture.md, "Exclusive attach, fencing and
 * failover").
 *
 * It holds a lease of its own (`agents/<node>`), watches the catalog, and:
 * - executes a fence order for its node: shuts down every exclusive filesystem there and
 *   acknowledges (state done, by agent) — the daemon does the same when it is alive;
 * - answers a preemption of a volume its node holds while the daemon is down: shuts that
 *   copy down and gives the hold up;
 * - fences itself like the daemon does: when its lease has not been renewed for
 *   cluster.selfFenceMs, every exclusive filesystem of its node is shut down. So when every
 *   berth process of a node lost its lease, nothing there can write.
 * It needs no volume lock and no daemon, and loads no server code.
 */
import { createServer, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import type { Backend } from './backend.js';
import { connectEtcd } from './catalog/etcd-client.js';
import { EtcdCatalog } from './catalog/etcd.js';
import { KEYS } from './catalog/etcd-keys.js';
import { EtcdSession } from './catalog/etcd-session.js';
import type { Config } from './config.js';
import { fenceHere, type FenceDeps } from './fencing.js';
import type { Logger } from './log.js';

export interface FenceAgentOptions {
  readonly config: Pick<Config, 'nodeId' | 'cluster' | 'stateRoot'>;
  readonly backends: ReadonlyMap<string, Backend>;
  readonly log: Logger;
  /** Called once this process is the state root's agent, before it waits for etcd (e.g. to write its pid file). */
  readonly onClaimed?: () => void;
}

export interface RunningAgent {
  stop(): Promise<void>;
}

/** The abstract socket that makes one agent per state root (and lets the daemon see it and stop it). */
export function agentSocketName(stateRoot: string): string {
  return `\0berth-fence-agent:${createHash('sha256').update(stateRoot).digest('hex').slice(0, 32)}`;
}

/**
 * Starts the agent; resolves once it holds its lease and watches the catalog. Throws
 * FailedPrecondition-like Error when another agent already serves this state root.
 * @example const agent = await startFenceAgent({ config, backends, log });
 */
export async function startFenceAgent(o: FenceAgentOptions): Promise<RunningAgent> {
  const { config, log } = o;
  const node = config.nodeId;
  const c = config.cluster;
  const lock = await listenOnce(agentSocketName(config.stateRoot));
  o.onClaimed?.();
  const conn = connectEtcd({ endpoints: c.etcd.endpoints, prefix: c.etcd.prefix, tls: c.etcd.tls, timeoutMs: c.etcd.timeoutMs });
  const session = new EtcdSession(conn, { ttlMs: c.leaseTtlMs, log, leaseFile: `${config.stateRoot}/fence-agent.lease` });
  const catalog = new EtcdCatalog({ conn, session, log });
  const d: FenceDeps = { catalog, backends: o.backends, log, nodeId: node };
  const announce = async (lease: string) => {
    await conn.call('announcing the fence agent', () => conn.client.put(conn.prefix + KEYS.agent(node)).value(lease).lease(lease).exec());
    log.info({ node, lease }, 'fence agent: alive');
  };
  for (let delay = 200; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      await catalog.start();
      await announce(await session.leaseId());
      break;
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'fence agent: waiting for etcd');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  session.on('granted', (lease) => void announce(lease).catch((err: unknown) => log.warn({ err }, 'fence agent: could not announce itself')));

  let queue: Promise<void> = Promise.resolve();
  const enqueue = (fn: () => Promise<void>) => {
    queue = queue.then(fn).catch((err: unknown) => log.error({ err }, 'fence agent: a reaction failed'));
  };
  const executeOrder = async () => {
    const order = catalog.getFence(node);
    if (!order || order.state !== 'ordered') return;
    const ids = await fenceHere(d, 'fence order (agent)');
    await catalog.commit((w) => {
      w.expectFence(order);
      w.putFence({ ...order, state: 'done', doneBy: 'agent', doneAt: new Date().toISOString(), volumes: ids });
    }).catch((err: unknown) => log.info({ err: err instanceof Error ? err.message : String(err) }, 'fence agent: the fence was acknowledged elsewhere'));
  };
  const preempted = async (volumeId: string) => {
    const ask = catalog.getPreempt(volumeId);
    const held = catalog.listAttachments(volumeId).some((a) => a.node === node);
    // The daemon answers when it is alive; the agent only stands in for a dead one.
    if (!ask || !held || catalog.nodeLiveness(node)?.alive) return;
    await fenceHere(d, `preempted by node "${ask.by}" (agent)`, new Set([volumeId]));
    await catalog.commit((w) => {
      w.deleteAttachment(volumeId, node);
      w.deletePreempt(volumeId);
    });
    log.warn({ volume: volumeId, by: ask.by }, 'fence agent: gave a preempted volume up (its copy here is shut down)');
  };
  const off = catalog.onChange((ch) => {
    if (ch.kind === 'fence' && ch.node === node) enqueue(executeOrder);
    else if (ch.kind === 'preempt') enqueue(() => preempted(ch.volumeId));
    else if (ch.kind === 'liveness' && ch.node === node) {
      for (const a of catalog.listAttachments()) if (a.node === node && catalog.getPreempt(a.volumeId)) enqueue(() => preempted(a.volumeId));
    }
  });
  enqueue(executeOrder);

  let selfFenced = false;
  const timer = setInterval(() => {
    const late = session.sinceRenewal() >= c.selfFenceMs;
    if (late && !selfFenced) {
      selfFenced = true;
      log.error({ sinceRenewalMs: Math.round(session.sinceRenewal()) }, 'fence agent: lease not renewed in time: fencing this node\'s exclusive volumes');
      enqueue(async () => void (await fenceHere(d, 'self-fence (agent)')));
    } else if (!late && selfFenced) {
      selfFenced = false;
    }
  }, 200);

  let stopped = false;
  return {
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      off();
      await queue;
      await catalog.close();
      await session.close();
      conn.close();
      await new Promise<void>((r) => lock.close(() => r()));
    },
  };
}

/** Listens on an abstract unix socket (this process's claim); EADDRINUSE when another agent has it. */
function listenOnce(name: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((s) => {
      // The daemon's keeper only checks that someone answers and hangs up at once: the reset
      // (EPIPE, ECONNRESET) must not take the agent down with an unhandled 'error'.
      s.on('error', () => undefined);
      s.end('berth-fence-agent\n');
    });
    srv.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new Error('a fence agent already runs for this state root') : err);
    });
    srv.listen(name, () => resolve(srv));
  });
}
