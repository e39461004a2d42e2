/**
 * A CSI gRPC client for tests and benchmarks: the three services on a unix socket,
 * each RPC as a promise. Errors reject with grpc-js ServiceError (`code`, `details`).
 *
 *   const c = createCsiClient('/tmp/x/csi.sock');
 *   const { volume } = await c.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCap()] });
 *   c.close();
 */
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { csiProtoPath } from '../../frontends/csi/proto.js';

type Rpc = (req: object, cb: (err: ServiceError | null, res: unknown) => void) => void;

export interface CsiClient {
  identity(method: string, req?: object): Promise<any>;
  controller(method: string, req?: object): Promise<any>;
  node(method: string, req?: object): Promise<any>;
  close(): void;
}

/**
 * A CSI client over the unix socket with the vendored proto; promise-returning calls by method name.
 * @example const c = createCsiClient(d.csiEndpoint); await c.node('NodeGetInfo'); c.close();
 */
export function createCsiClient(socket: string): CsiClient {
  const def = loadSync(csiProtoPath(), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as any;
  const address = `unix:${socket}`;
  const make = (name: string): Client => new pkg.csi.v1[name](address, credentials.createInsecure());
  const clients = { Identity: make('Identity'), Controller: make('Controller'), Node: make('Node') };
  const call = (c: Client, method: string, req: object) =>
    new Promise<any>((resolve, reject) => {
      const fn = (c as unknown as Record<string, Rpc>)[method];
      if (!fn) throw new Error(`no RPC ${method}`);
      fn.call(c, req, (err, res) => (err ? reject(err) : resolve(res)));
    });
  return {
    identity: (m, r = {}) => call(clients.Identity, m, r),
    controller: (m, r = {}) => call(clients.Controller, m, r),
    node: (m, r = {}) => call(clients.Node, m, r),
    close() {
      for (const c of Object.values(clients)) c.close();
    },
  };
}

export const mountCap = (mode = 'SINGLE_NODE_WRITER', fs_type = '', mount_flags: string[] = []) => ({
  mount: { fs_type, mount_flags },
  access_mode: { mode },
});
export const blockCap = (mode = 'SINGLE_NODE_WRITER') => ({ block: {}, access_mode: { mode } });

/** The gRPC error a call failed with; fails the test when the call succeeded. */
export async function grpcError(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}
