/**
 * Certificates for the mutual-TLS tests, made with the openssl CLI under a test's root:
 * a CA, berth's server certificate (subjectAltName 127.0.0.1 and localhost), a client
 * certificate signed by the CA, one signed by another CA ("foreign") and one that has
 * expired. EC P-256 keys: fast to make on a busy machine.
 *
 * @example const certs = await makeCerts(root.path('tls')); // certs.ca, certs.client.cert, ...
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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
  await openssl(['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`], dir);
}

async function signed(dir: string, name: string, ca: string, ext: string, days: string): Promise<KeyPair> {
  await openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  await writeFile(join(dir, `${name}.ext`), ext);
  // -days -1: notAfter a day before notBefore, which OpenSSL 3 accepts: already expired.
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-out', `${name}.crt`, '-days', days, '-extfile', `${name}.ext`], dir);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** Makes every certificate the TLS tests use in `dir` (created). */
export async function makeCerts(dir: string): Promise<TestCerts> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await Promise.all([selfSignedCa(dir, 'test-ca'), selfSignedCa(dir, 'other-ca')]);
  const clientExt = 'extendedKeyUsage=clientAuth\n';
  const [server, client, foreign, expired] = await Promise.all([
    signed(dir, 'server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', '2'),
    signed(dir, 'client', 'test-ca', clientExt, '2'),
    signed(dir, 'foreign', 'other-ca', clientExt, '2'),
    signed(dir, 'expired', 'test-ca', clientExt, '-1'),
  ]);
  return { dir, ca: join(dir, 'test-ca.crt'), server, client, foreign, expired };
}
