/**
 * What a driver declares it runs, enforced: each backend gets an Exec that refuses a program
 * its driver did not declare (before core/os/exec.ts's own allow-list is even asked), and the
 * registry checks at start-up that the declared programs are allowed and installed.
 */
import type { BackendDriver } from './backend.js';
import { BerthError } from './errors.js';
import type { Logger } from './log.js';
import { ALLOWED_BINARIES, CommandError, findBinary, type Exec } from './os/exec.js';

/**
 * The Exec a backend of `driver` gets: `exec`, refusing any program the driver did not declare.
 * @example const own = driverExec(exec, 'loop', builtinDrivers.loop);
 */
export function driverExec(exec: Exec, name: string, driver: BackendDriver): Exec {
  const declared = new Set(driver.binaries);
  return (cmd) =>
    declared.has(cmd.bin)
      ? exec(cmd)
      : Promise.reject(new CommandError(cmd.bin, cmd.args, null, null, false, `the ${name} driver does not declare ${cmd.bin} among the programs it runs`));
}

/**
 * Start-up check of one backend instance's driver: a declared program that core/os/exec.ts
 * does not allow is a bug (Internal); one that is not installed is logged, naming the backend,
 * since only some of its volumes may need it (loop needs mkfs.xfs for xfs volumes only).
 * Returns the missing programs.
 */
export function checkDriverBinaries(instance: string, name: string, driver: BackendDriver, log: Logger): string[] {
  const unknown = driver.binaries.filter((b) => !(ALLOWED_BINARIES as readonly string[]).includes(b));
  if (unknown.length) {
    throw new BerthError('Internal', `driver "${name}" declares ${unknown.join(', ')}, which core/os/exec.ts does not allow`);
  }
  const missing = driver.binaries.filter((b) => findBinary(b) === null);
  if (missing.length) {
    log.warn({ backend: instance, driver: name, missing }, `backend "${instance}" (${name}): ${missing.join(', ')} not installed; what needs them will fail`);
  }
  return missing;
}
