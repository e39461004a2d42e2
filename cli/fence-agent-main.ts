/**
 * The fence agent's composition root (like daemon.ts for the daemon): the config the daemon
 * wrote, the backends it names, the agent itself, its pid file; stops on SIGTERM/SIGINT.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackends, createExec, createLogger, startFenceAgent, type Config } from '../core/index.js';
import { builtinDrivers } from '../backends/index.js';

export const AGENT_CONFIG = 'fence-agent.json';
export const AGENT_PID = 'fence-agent.pid';

/** Runs until a signal; returns the exit code. */
export async function runFenceAgent(stateRoot: string): Promise<number> {
  let config: Config;
  try {
    config = JSON.parse(readFileSync(join(stateRoot, AGENT_CONFIG), 'utf8')) as Config;
  } catch (err) {
    process.stderr.write(`berth fence-agent: cannot read ${join(stateRoot, AGENT_CONFIG)} (written by berth serve in cluster mode): ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const log = createLogger({ level: config.log.level }).child({ component: 'fence-agent' });
  const exec = createExec();
  const backends = await createBackends({ config, drivers: builtinDrivers, exec, log });
  const pidFile = join(stateRoot, AGENT_PID);
  let agent;
  try {
    // The pid file as soon as this process is the agent: it may wait for etcd a long time,
    // and whoever stops it (the daemon, an operator, a test) finds it by that file.
    agent = await startFenceAgent({ config, backends, log, onClaimed: () => writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 }) });
  } catch (err) {
    log.info({ reason: err instanceof Error ? err.message : String(err) }, 'fence agent not started');
    return 0;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'fence agent: stopping');
  await agent.stop();
  rmSync(pidFile, { force: true });
  return 0;
}
