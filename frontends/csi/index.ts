/**
 * The CSI frontend: a gRPC server on a unix socket (transport.ts) serving Identity always,
 * and Controller and/or Node by config csi.mode.
 */
import type { Config, Logger, VolumeService } from '../../core/index.js';
import type { FrontendServer } from '../types.js';
import { claimSocketPath, releaseSocketPath, setSocketAccess } from '../unix-socket.js';
import { createControllerHandlers } from './controller.js';
import { createIdentityHandlers } from './identity.js';
import { createNodeHandlers } from './node.js';
import { MAX_CSI_MESSAGE_BYTES } from './limits.js';
import { loadCsiServices } from './proto.js';
import { wrapHandlers } from './server.js';
import { createSnapshotHandlers } from './snapshots.js';
import { topologyKeyFor, type CsiIdentity } from './topology.js';
import { createUnaryServer, type UnaryServer } from './transport.js';

export interface CsiFrontendOptions {
  readonly service: VolumeService;
  readonly config: Config['csi'];
  readonly nodeId: string;
  readonly version: string;
  readonly log: Logger;
  /** Group given the socket (config socketGroup); null: root only. */
  readonly socketGroup?: number | null;
}

/**
 * Builds the CSI server; nothing listens until start().
 * @example const csi = createCsiFrontend({ service, config: cfg.csi, nodeId: cfg.nodeId, version, log }); await csi.start();
 */
export function createCsiFrontend(o: CsiFrontendOptions): FrontendServer {
  const endpoint = o.config.endpoint.replace(/^unix:\/\//, '').replace(/^unix:/, '');
  const log = o.log.child({ frontend: 'csi' });
  const id: CsiIdentity = { driverName: o.config.driverName, nodeId: o.nodeId, topologyKey: topologyKeyFor(o.config.driverName) };
  const controller = o.config.mode === 'controller' || o.config.mode === 'both';
  const node = o.config.mode === 'node' || o.config.mode === 'both';
  let server: UnaryServer | null = null;
  /** Set once our server bound the socket: never delete a socket another process serves. */
  let owned = false;

  return {
    name: 'csi',

    async start() {
      if (server) return;
      const services = loadCsiServices();
      // A CSI request is a few KB; gRPC's usual limit (4 MiB) is more than any CO sends.
      const s = createUnaryServer({
        maxMessageBytes: MAX_CSI_MESSAGE_BYTES,
        onError: (err) => log.warn({ err, endpoint }, 'csi socket error'),
      });
      s.add(services.Identity, wrapHandlers('Identity', createIdentityHandlers({
        service: o.service, driverName: o.config.driverName, version: o.version, controller,
      }), log));
      if (controller) {
        s.add(services.Controller, wrapHandlers('Controller', {
          ...createControllerHandlers({ service: o.service, id, config: o.config }),
          ...createSnapshotHandlers({ service: o.service }),
        }, log));
      }
      if (node) s.add(services.Node, wrapHandlers('Node', createNodeHandlers({ service: o.service, id, config: o.config }), log));
      let bound = false;
      try {
        await claimSocketPath(endpoint, 'csi.endpoint');
        await s.listen(endpoint);
        bound = true;
        // The socket is made with the umask's mode: the same 0660 (+ group) as the others.
        await setSocketAccess(endpoint, o.socketGroup ?? null);
      } catch (err) {
        await s.close(0); // a refused start leaves no half-built server behind
        if (bound) await releaseSocketPath(endpoint);
        throw err;
      }
      owned = true;
      server = s;
      log.info({ endpoint, mode: o.config.mode, driver: o.config.driverName }, 'csi listening');
    },

    async stop() {
      const s = server;
      server = null;
      // Let in-flight calls finish for a moment, then cut the rest off.
      if (s) await s.close(5_000);
      if (!owned) return;
      owned = false;
      await releaseSocketPath(endpoint);
    },
  };
}
