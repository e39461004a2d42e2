/**
 * Mutual TLS for the Docker plugin API's TCP listener (docker.tls). The plugin protocol has
 * no authentication of its own, so a listener other hosts can reach must know who is
 * calling: only a client whose certificate chains to docker.tls.ca gets a request through.
 *
 * - loadServerTls reads the PEM files named in the config (never passed on a command line)
 *   and checks that they make a usable server context, naming the key of a bad file.
 * - guardClients refuses every connection without a valid client certificate before the
 *   HTTP layer sees a byte, and logs one line saying who and why (no certificate, expired,
 *   signed by another CA...). Node's own rejectUnauthorized would only log "socket hang up".
 *
 * @example
 *   const tls = await loadServerTls(config.docker.tls);
 *   const server = createServer({ ...tls });   // node:https
 *   guardClients(server, log);
 */
import { readFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext, type TLSSocket } from 'node:tls';
import { BerthError, type Config, type Logger } from '../../core/index.js';

type TlsConfig = Config['docker']['tls'];

export interface ServerTlsOptions {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Ask every client for a certificate... */
  readonly requestCert: true;
  /** ...and decide in guardClients (so the refusal can be logged with its reason). */
  readonly rejectUnauthorized: false;
  readonly minVersion: 'TLSv1.2';
}

async function readPem(field: 'ca' | 'cert' | 'key', path: string | null): Promise<Buffer> {
  if (path === null) throw new BerthError('InvalidArgument', `docker.tls.${field} is not set`, { field: `docker.tls.${field}` });
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new BerthError('FailedPrecondition', `docker.tls.${field}: cannot read ${path}: ${code}`, { field: `docker.tls.${field}`, cause: err });
  }
}

/** Reads docker.tls.{ca,cert,key}; throws naming the key whose file is missing or unusable. */
export async function loadServerTls(t: TlsConfig): Promise<ServerTlsOptions> {
  const [ca, cert, key] = await Promise.all([readPem('ca', t.ca), readPem('cert', t.cert), readPem('key', t.key)]);
  // Each file on its own first, so the error names the one that is wrong...
  for (const [field, opts] of [['ca', { ca }], ['cert', { cert }], ['key', { key }]] as const) {
    try {
      createSecureContext(opts);
    } catch (err) {
      throw new BerthError('InvalidArgument', `docker.tls.${field}: ${t[field]} is not a usable PEM file: ${(err as Error).message}`, { field: `docker.tls.${field}`, cause: err });
    }
  }
  // ...then together: a key that does not belong to the certificate.
  try {
    createSecureContext({ ca, cert, key });
  } catch (err) {
    throw new BerthError('InvalidArgument', `docker.tls.key: ${t.key} does not match the certificate ${t.cert}: ${(err as Error).message}`, { field: 'docker.tls.key', cause: err });
  }
  return { ca, cert, key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' };
}

/** Why a client was refused, in words an operator acts on (OpenSSL's verify codes). */
export function refusalReason(code: string | undefined, presented: boolean): string {
  // Go clients (Docker) send no certificate at all when theirs is not issued by one of the
  // CAs the server names, so "none" is also what a certificate from another CA looks like.
  if (!presented) return 'no client certificate was presented (Docker sends none when its certificate is not issued by the CA in docker.tls.ca)';
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'the client certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'the client certificate is not valid yet';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'the client certificate is not signed by the CA in docker.tls.ca';
    default:
      return `the client certificate was not accepted (${code ?? 'unknown reason'})`;
  }
}

/**
 * Destroys every TLS connection whose client certificate did not verify, before the HTTP
 * server reads from it (this listener runs first), and logs who was refused and why.
 */
export function guardClients(server: HttpsServer, log: Logger): void {
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (socket.authorized) return;
    const peer = socket.getPeerCertificate();
    const presented = peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0;
    const reason = refusalReason(socket.authorizationError?.toString(), presented);
    log.warn({
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
      reason,
      code: socket.authorizationError?.toString(),
      ...(presented ? { subject: peer.subject?.CN, issuer: peer.issuer?.CN, validTo: peer.valid_to } : {}),
    }, `docker.tls: refused a client from ${socket.remoteAddress}: ${reason}`);
    socket.destroy();
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    log.warn({ remote: socket.remoteAddress ?? null, code: err.code }, `docker.tls: TLS handshake with ${socket.remoteAddress ?? 'a client'} failed: ${err.message.split('\n')[0]}`);
  });
}
