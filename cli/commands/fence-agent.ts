/**
 * `berth fence-agent --state-root DIR`: the node's fence agent (core/fence-agent.ts), started
 * by `berth serve` in cluster mode from the config it wrote to <stateRoot>/fence-agent.json
 * (or run by a unit of its own). It outlives the daemon on purpose; SIGTERM stops it.
 */
import type { CommandModule } from 'yargs';
import { withOptions, type GlobalArgs } from '../context.js';

type Args = GlobalArgs & { 'state-root': string };

export const fenceAgentCommand: CommandModule<GlobalArgs, Args> = {
  command: 'fence-agent',
  describe: 'Run the node\'s fence agent (cluster mode; berth serve starts it)',
  builder: (y) => withOptions(y, {
    'state-root': { type: 'string', demandOption: true, describe: 'the daemon\'s state root (holds fence-agent.json)' },
  }),
  handler: async (a) => {
    const { runFenceAgent } = await import('../fence-agent-main.js');
    process.exitCode = await runFenceAgent(a['state-root']);
  },
};
