/**
 * `berth serve`: the command's options; the daemon itself is cli/serve-main.ts, loaded only
 * when it starts.
 */
import type { CommandModule } from 'yargs';
import type { ConfigFlags } from '../../core/config-load.js';
import { withOptions, type GlobalArgs } from '../context.js';

type ServeArgs = GlobalArgs & {
  config?: string; 'state-root'?: string; 'node-id'?: string; 'log-level'?: string; 'default-backend'?: string;
  'admin-tcp'?: string; 'docker-socket'?: string; 'docker-tcp'?: string; 'csi-endpoint'?: string; docker?: boolean; csi?: boolean;
  'etcd-endpoints'?: string; 'etcd-prefix'?: string;
};

export const serveCommand: CommandModule<GlobalArgs, ServeArgs> = {
  command: 'serve',
  describe: 'Run the daemon (config: --config, else /etc/berth/config.yaml, else embedded defaults)',
  builder: (y) =>
    withOptions(y, {
      config: { type: 'string', describe: 'YAML config file (default $BERTH_CONFIG, else /etc/berth/config.yaml if it exists)' },
      'state-root': { type: 'string', describe: 'override stateRoot (default /var/lib/berth)' },
      'node-id': { type: 'string', describe: 'override nodeId (default: the host name)' },
      'log-level': { type: 'string', describe: 'debug | info | warn | error | silent' },
      'default-backend': { type: 'string', describe: 'override defaultBackend' },
      'admin-tcp': { type: 'string', describe: 'also serve the admin API on host:port (needs admin.token)' },
      'docker-socket': { type: 'string', describe: 'override docker.socket' },
      'docker-tcp': { type: 'string', describe: 'also serve the Docker plugin API on host:port, announced by a spec file (docker.tcp; loopback only)' },
      'csi-endpoint': { type: 'string', describe: 'override csi.endpoint' },
      docker: { type: 'boolean', describe: 'serve the Docker volume plugin API (--no-docker to disable)' },
      csi: { type: 'boolean', describe: 'serve CSI (--no-csi to disable)' },
      'etcd-endpoints': { type: 'string', describe: 'cluster mode: comma-separated etcd endpoints (TLS files only in the config file or BERTH_ETCD_*)' },
      'etcd-prefix': { type: 'string', describe: 'cluster mode: key prefix in etcd (default /berth/)' },
    }),
  handler: async (a) => {
    process.exitCode = await serve(a);
  },
};

async function serve(a: ServeArgs): Promise<number> {
  const flags: ConfigFlags = {
    stateRoot: a['state-root'], nodeId: a['node-id'], logLevel: a['log-level'], defaultBackend: a['default-backend'],
    socket: a.socket, adminTcp: a['admin-tcp'], dockerSocket: a['docker-socket'], dockerTcp: a['docker-tcp'], csiEndpoint: a['csi-endpoint'],
    dockerEnabled: a.docker, csiEnabled: a.csi, etcdEndpoints: a['etcd-endpoints'], etcdPrefix: a['etcd-prefix'],
  };
  // Loaded here, not at the top: the client commands must not pay for the daemon's
  // dependencies (gRPC, SQLite, zod, prom-client) on every `berth` call.
  const { runServe } = await import('../serve-main.js');
  return runServe(flags, a.config);
}
