/**
 * The backend registry: builds the configured backend instances from the driver table.
 * Instance names are volume-name-like; each instance's `driver` must be a known driver
 * (else InvalidArgument naming "backends.<name>.driver" and listing the known ones); the
 * driver's factory validates the rest of its settings and names bad keys itself. Each backend
 * runs only the programs its driver declares (core/backend-drivers.ts).
 */
import type { Backend, BackendDriver } from './backend.js';
import { checkDriverBinaries, driverExec } from './backend-drivers.js';
import type { Config } from './config.js';
import { BerthError, invalidArgument } from './errors.js';
import type { Logger } from './log.js';
import type { Exec } from './os/exec.js';
import { validateVolumeName } from './spec.js';
import { didYouMean } from './suggest.js';

export interface CreateBackendsOptions {
  readonly config: Pick<Config, 'backends' | 'stateRoot' | 'nodeId'>;
  readonly drivers: Record<string, BackendDriver>;
  readonly exec: Exec;
  readonly log: Logger;
}

/**
 * @example const backends = await createBackends({ config, drivers: builtinDrivers, exec, log });
 */
export async function createBackends(o: CreateBackendsOptions): Promise<Map<string, Backend>> {
  const out = new Map<string, Backend>();
  const instances = o.config.backends ?? {};
  if (typeof instances !== 'object' || Array.isArray(instances)) throw invalidArgument('backends', 'must be a map of instance name -> settings');
  const known = Object.keys(o.drivers).sort();
  for (const [name, settings] of Object.entries(instances)) {
    validateVolumeName(name, `backends.${name}`);
    if (!settings || typeof settings !== 'object' || Array.isArray(settings)) {
      throw invalidArgument(`backends.${name}`, 'must be a map of settings with a "driver" key');
    }
    const driver = settings.driver;
    if (typeof driver !== 'string' || !Object.hasOwn(o.drivers, driver)) {
      throw invalidArgument(
        `backends.${name}.driver`,
        driver === undefined
          ? `missing (known drivers: ${known.join(', ')})`
          : `unknown driver ${JSON.stringify(driver)}${didYouMean(String(driver), known)} (known drivers: ${known.join(', ')})`,
      );
    }
    const d = o.drivers[driver]!;
    const log = o.log.child({ backend: name });
    checkDriverBinaries(name, driver, d, log);
    let backend: Backend;
    try {
      backend = await d.create({ name, settings, stateRoot: o.config.stateRoot, node: o.config.nodeId, exec: driverExec(o.exec, driver, d), log });
    } catch (err) {
      if (err instanceof BerthError) throw err;
      throw new BerthError('Internal', `backend "${name}" (${driver}) failed to start: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (backend.name !== name) {
      throw new BerthError('Internal', `driver "${driver}" built backend "${backend.name}" for instance "${name}"`);
    }
    out.set(name, backend);
  }
  return out;
}
