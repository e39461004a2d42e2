/** `berth status` (is the daemon up, what does it serve) and `berth version` (client and daemon). */
import type { CommandModule } from 'yargs';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import { BERTH_VERSION } from '../version.js';

export const statusCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'status',
  describe: 'Show daemon status (exit 1 when it cannot be reached)',
  handler: async (a) => {
    const s = await clientFor(a).status();
    printerFor(a).item(s, [
      ['Version', (x) => x.version],
      ['Node', (x) => x.nodeId],
      ['Ready', (x) => (x.ready ? 'yes' : 'no')],
      ['Volumes', (x) => String(x.volumes)],
      ['Backends', (x) => x.backends.join(', ')],
      ['Started', (x) => x.startedAt],
    ]);
  },
};

export const versionCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'version',
  describe: 'Print the client version and, when reachable, the daemon version',
  handler: async (a) => {
    const daemon = await clientFor(a).version().then((v) => v.version, () => null);
    printerFor(a).value({ client: BERTH_VERSION, daemon }, `client ${BERTH_VERSION}\ndaemon ${daemon ?? 'unreachable'}`);
  },
};
