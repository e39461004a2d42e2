/**
 * Certificates for the mutual-TLS tests, made with the openssl CLI: a CA, berth's server
 * certificate (subjectAltName 127.0.0.1 and localhost), a client certificate signed by the
 * CA, one signed by another CA ("foreign") and one that has expired. EC P-256 keys: fast to
 * make on a busy machine.
 * - makeCerts(dir): a set of a test's own, under its root (unit tests);
 * - machineCerts(): the one set the real dockerd is handed (MACHINE_CERT_DIR), made once and
 *   kept: dockerd builds a plugin's TLS client from the files of its .json spec once and keeps
 *   it for its life, so what those paths hold must never change under it (docker-drivers.ts).
 *
 * @example const certs = await makeCerts(root.path('tls')); // certs.ca, certs.client.cert, ...
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireLock, TEST_RUN_DIR } from './machine-lock.js';

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

export interface TestCerts {
  readonly dir: string;
  /** CA certificate (PEM path) that signs server, client and expired. */
  readonly ca: string;
  readonly server: KeyPair;
  readonly client: KeyPair;
  /** Signed by another CA. */
  readonly foreign: KeyPair;
  /** Signed by the CA, notAfter in the past. */
  readonly expired: KeyPair;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 60_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve();
    });
  });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function selfSignedCa(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3650', '-subj', `/CN=${name}`], dir);
}

async function signed(dir: string, name: string, ca: string, ext: string, days: string): Promise<void> {
  await openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  await writeFile(join(dir, `${name}.ext`), ext);
  // -days -1: notAfter a day before notBefore, which OpenSSL 3 accepts: already expired.
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-out', `${name}.crt`, '-days', days, '-extfile', `${name}.ext`], dir);
}

/**
 * Where makeCerts(dir) puts each file (whether made yet or not).
 * @example certPaths('/x').client.cert // '/x/client.crt'
 */
export function certPaths(dir: string): TestCerts {
  const pair = (n: string) => ({ cert: join(dir, `${n}.crt`), key: join(dir, `${n}.key`) });
  return { dir, ca: join(dir, 'test-ca.crt'), server: pair('server'), client: pair('client'), foreign: pair('foreign'), expired: pair('expired') };
}

/**
 * Makes every certificate the TLS tests use in `dir` (created). With `reuse`, certificates
 * already there (a complete set: the marker file is written last) are returned as they are.
 */
export async function makeCerts(dir: string, o: { reuse?: boolean } = {}): Promise<TestCerts> {
  const done = join(dir, 'complete');
  const paths = () => certPaths(dir);
  if (o.reuse && existsSync(done)) return paths();
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await Promise.all([selfSignedCa(dir, 'test-ca'), selfSignedCa(dir, 'other-ca')]);
  const clientExt = 'extendedKeyUsage=clientAuth\n';
  await Promise.all([
    signed(dir, 'server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', '3650'),
    signed(dir, 'client', 'test-ca', clientExt, '3650'),
    signed(dir, 'foreign', 'other-ca', clientExt, '3650'),
    signed(dir, 'expired', 'test-ca', clientExt, '-1'),
  ]);
  await writeFile(done, '');
  return paths();
}

/** The certificates every test run on this machine hands the real dockerd (tmpfs: gone at reboot, with dockerd's memory). */
export const MACHINE_CERT_DIR = join(TEST_RUN_DIR, 'tls');

/**
 * The machine's set (MACHINE_CERT_DIR), made by the first caller under a machine-wide lock
 * and never replaced while complete.
 * @example const certs = await machineCerts(); // certs.ca === '/run/berth-test/tls/test-ca.crt'
 */
export async function machineCerts(): Promise<TestCerts> {
  const lock = await acquireLock('tls-certs', 120_000);
  try {
    return await makeCerts(MACHINE_CERT_DIR, { reuse: true });
  } finally {
    await lock.release();
  }
}
