/**
 * The CSI frontend in-process, for frontends/csi unit tests: a real grpc-js server on a unix
 * socket in front of the real core with fake backends (test/fake/harness.ts), and a client.
 * Every environment a test starts is stopped and removed after it, even when it fails.
 *
 *   const csiEnvs = useInProcessCsi('topo');                       // in the file: registers afterEach
 *   const { c, h } = await csiEnvs.start({ backends: { local: { capabilities: LOOP_LIKE } } });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { createSilentLogger, defaultConfig } from '../../core/index.js';
import { createCsiFrontend } from '../../frontends/csi/index.js';
import type { FrontendServer } from '../../frontends/types.js';
import { createFakeHarness, type FakeHarness, type FakeHarnessOptions } from '../fake/harness.js';
import { createCsiClient, type CsiClient } from './csi-client.js';

export type FakeBackends = NonNullable<FakeHarnessOptions['backends']>;

export interface InProcessCsi {
  readonly h: FakeHarness;
  readonly csi: FrontendServer;
  readonly c: CsiClient;
  /** The environment's temporary directory (state root, socket). */
  readonly dir: string;
}

export interface InProcessCsiOptions {
  readonly backends: FakeBackends;
  /** Accept publish and stage targets under the environment's directory (default: none). */
  readonly targetsUnderDir?: boolean;
}

export function useInProcessCsi(label: string): { start(o: InProcessCsiOptions): Promise<InProcessCsi> } {
  const envs: InProcessCsi[] = [];
  afterEach(async () => {
    for (const e of envs.splice(0)) {
      e.c.close();
      await e.csi.stop();
      await e.h.cleanup();
      rmSync(e.dir, { recursive: true, force: true });
    }
  });
  return {
    async start(o) {
      const dir = mkdtempSync(join(tmpdir(), `berth-csi-${label}-`));
      const h = await createFakeHarness({
        root: join(dir, 'state'), backends: o.backends, nodeId: 'node-a', ...(o.targetsUnderDir ? { targetPrefixes: [dir] } : {}),
      });
      const socket = join(dir, 'run', 'csi.sock');
      const csi = createCsiFrontend({
        service: h.svc, config: { ...defaultConfig().csi, endpoint: socket }, nodeId: 'node-a', version: 'test', log: createSilentLogger(),
      });
      try {
        await csi.start();
      } catch (err) {
        await h.cleanup();
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      const env = { h, csi, c: createCsiClient(socket), dir };
      envs.push(env);
      return env;
    },
  };
}
