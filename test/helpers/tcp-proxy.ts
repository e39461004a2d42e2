/**
 * A test-controlled TCP proxy on a free loopback port, for cutting one node off from etcd
 * (a partition) without touching anyone else's traffic: `cut()` drops every open
 * connection and blackholes new ones (accepted, never forwarded, like packets lost on the
 * way); `heal()` forwards again.
 *
 *   const proxy = await startTcpProxy(root, etcd.port);   // node A talks to etcd through proxy.endpoint
 *   proxy.cut(); ...; proxy.heal();
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TmpRoot } from './tmp-root.js';

export interface TcpProxy {
  readonly port: number;
  readonly endpoint: string;
  cut(): void;
  heal(): void;
  readonly isCut: boolean;
}

export async function startTcpProxy(root: TmpRoot, targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => undefined);
    if (cut) return; // blackholed: held open, nothing forwarded
    const upstream = connect(targetPort, targetHost);
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  root.defer(() => new Promise<void>((resolve) => {
    for (const s of open) s.destroy();
    server.close(() => resolve());
  }));
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    cut() {
      cut = true;
      for (const s of open) s.destroy();
    },
    heal() {
      cut = false;
      for (const s of open) s.destroy(); // blackholed clients reconnect and get forwarded
    },
    get isCut() {
      return cut;
    },
  };
}
