/**
 * Keeps the node's fence agent running (cluster mode): `berth serve` writes the agent's config
 * (<stateRoot>/fence-agent.json, 0600), starts `berth fence-agent` as a process of its own
 * (detached: a kill -9 of the daemon leaves it running, which is its whole point) unless one
 * already serves the state root, and starts it again if it dies. A graceful stop of the daemon
 * stops the agent too, unless this node still holds exclusive volumes (its containers may
 * write on without the daemon).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentSocketName, spawnSelfDetached, type Config, type Logger } from '../core/index.js';
import { socketAnswers } from '../frontends/unix-socket.js';
import { AGENT_CONFIG, AGENT_PID } from './fence-agent-main.js';

const CHECK_EVERY_MS = 5_000;

export interface AgentKeeper {
  /** Stops watching; stops the agent unless `keep` (the node still holds exclusive volumes). */
  stop(keep: boolean): Promise<void>;
}

/** @example const keeper = await keepFenceAgent({ config, log }); ...; await keeper.stop(false); */
export async function keepFenceAgent(o: { config: Config; log: Logger }): Promise<AgentKeeper> {
  const { config, log } = o;
  const file = join(config.stateRoot, AGENT_CONFIG);
  writeFileSync(`${file}.tmp`, JSON.stringify(config), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  const name = agentSocketName(config.stateRoot);
  const ensure = async () => {
    if (await socketAnswers(name)) return;
    const pid = spawnSelfDetached(['fence-agent', '--state-root', config.stateRoot]);
    log.info({ pid }, 'fence agent started');
  };
  await ensure();
  const timer = setInterval(() => void ensure().catch((err: unknown) => log.warn({ err }, 'could not start the fence agent')), CHECK_EVERY_MS);
  timer.unref();
  return {
    async stop(keep) {
      clearInterval(timer);
      if (keep) {
        log.warn('the fence agent keeps running: this node still holds exclusive volumes its containers may write');
        return;
      }
      let pid = 0;
      try {
        pid = Number(readFileSync(join(config.stateRoot, AGENT_PID), 'utf8').trim());
      } catch {
        // no pid file: the agent never got its claim (another one serves this state root)
      }
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // gone already
        }
      }
    },
  };
}
