/**
 * A lean CSI client for benchmarks: unary gRPC calls over one node:http2 connection, with the
 * same interface as csi-client.ts (grpc-js). It frames, sends, and reads the answer and its
 * status; no channel state machine, interceptors, retries or channelz.
 *
 * Why the benchmarks use it: a CO's own cost per call is not the driver's. kubelet calls CSI
 * drivers with grpc-go, whose cost per call is close to this client's; grpc-js's client adds
 * ~0.3-0.5 ms to every call of either driver on these machines (measured side by side,
 * docs/benchmarks.md), which dilutes a comparison of drivers whose own cost per call is
 * ~1-2 ms. The tests keep csi-client.ts: a real grpc-js client checks the server's protocol.
 *
 *   const c = createLeanCsiClient('/tmp/x/csi.sock');
 *   const { volume } = await c.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCap()] });
 *   c.close();
 */
import { connect, type IncomingHttpHeaders } from 'node:http2';
import { connect as connectNet } from 'node:net';
import type { MethodDefinition } from '@grpc/grpc-js';
import { loadCsiServices } from '../../frontends/csi/proto.js';
import { messageFrame } from '../../frontends/csi/transport.js';
import type { CsiClient } from './csi-client.js';

/** grpc-message as sent: percent-encoded bytes (the gRPC spec). */
function decodeMessage(raw: unknown): string {
  const text = String(raw ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The call's status from headers or trailers, when one is there. */
function statusOf(h: IncomingHttpHeaders): { code: number; details: string } | null {
  const code = h['grpc-status'];
  return code === undefined ? null : { code: Number(code), details: decodeMessage(h['grpc-message']) };
}

/**
 * @example const c = createLeanCsiClient(d.csiEndpoint); await c.node('NodeGetInfo'); c.close();
 */
export function createLeanCsiClient(socket: string): CsiClient {
  const services = loadCsiServices() as unknown as Record<string, Record<string, MethodDefinition<object, unknown>>>;
  const session = connect('http://localhost', { createConnection: () => connectNet(socket) });
  session.on('error', () => undefined); // each call reports its own failure

  const call = (service: string, method: string, req: object) => new Promise<any>((resolve, reject) => {
    const def = services[service]?.[method];
    if (!def) throw new Error(`no RPC ${service}/${method}`);
    const frame = messageFrame(def.requestSerialize(req));
    const stream = session.request({ ':method': 'POST', ':path': def.path, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    let status: { code: number; details: string } | null = null;
    let httpStatus = 0;
    stream.on('response', (h) => {
      httpStatus = Number(h[':status']);
      status = statusOf(h); // a Trailers-Only answer
    });
    stream.on('trailers', (t) => {
      status = statusOf(t);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('end', () => {
      const s = status as { code: number; details: string } | null;
      if (httpStatus !== 200) return reject(new Error(`${def.path}: HTTP ${httpStatus}`));
      if (!s) return reject(new Error(`${def.path}: the answer has no grpc-status`));
      if (s.code !== 0) return reject(Object.assign(new Error(`${s.code} ${s.details}`), s));
      const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (data.length < 5 || data[0] !== 0 || data.readUInt32BE(1) !== data.length - 5) {
        return reject(new Error(`${def.path}: the answer is not one uncompressed message`));
      }
      resolve(def.responseDeserialize(data.subarray(5)));
    });
    stream.end(frame);
  });

  return {
    identity: (m, r = {}) => call('Identity', m, r),
    controller: (m, r = {}) => call('Controller', m, r),
    node: (m, r = {}) => call('Node', m, r),
    close() {
      session.close();
    },
  };
}
