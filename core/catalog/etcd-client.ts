/**
 * The one etcd connection a cluster-mode daemon uses (the npm `etcd3` client: KV,
 * transactions, leases and watches against etcd 3.4+), built from `cluster.etcd`:
 * endpoints, key prefix, TLS material read from files, and a deadline on every call.
 *
 * Failing fast is the rule: every unary call has a deadline (`timeoutMs`), a retry is tried
 * once on a recoverable error, and a circuit breaker stops hammering an endpoint that keeps
 * failing. Whatever the reason (refused, timed out, breaker open, closed), an unreachable etcd
 * becomes one error kind, Unavailable, naming the endpoints, so no caller waits behind it.
 */
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import { BerthError, invalidArgument, unavailable } from '../errors.js';

export interface EtcdSettings {
  /** "http://host:port" or "https://host:port" (https requires tls.ca). */
  readonly endpoints: readonly string[];
  /** Every key berth writes starts with it ("/berth/"). */
  readonly prefix: string;
  /** Files holding the CA and, for client authentication, the client certificate and key. */
  readonly tls: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null } | null;
  /** Deadline of every call. */
  readonly timeoutMs: number;
}

export interface EtcdConnection {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly endpoints: readonly string[];
  /** Runs one etcd call; any failure to reach etcd becomes Unavailable naming `what` and the endpoints. */
  call<T>(what: string, fn: () => Promise<T>): Promise<T>;
  /** The error an unreachable etcd gives, for callers that detect it themselves. */
  unavailable(what: string, cause?: unknown): BerthError;
  close(): void;
}

/** The TLS material, read once at start-up; a missing file is named by its config key. */
function credentials(tls: EtcdSettings['tls']): IOptions['credentials'] | undefined {
  if (!tls || tls.ca === null) return undefined;
  const read = (key: 'ca' | 'cert' | 'key', path: string | null) => {
    if (path === null) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw invalidArgument(`cluster.etcd.tls.${key}`, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  };
  if ((tls.cert === null) !== (tls.key === null)) {
    throw invalidArgument(tls.cert === null ? 'cluster.etcd.tls.cert' : 'cluster.etcd.tls.key', 'a client certificate needs both cert and key');
  }
  const rootCertificate = read('ca', tls.ca)!;
  const certChain = read('cert', tls.cert);
  const privateKey = read('key', tls.key);
  return { rootCertificate, ...(certChain ? { certChain } : {}), ...(privateKey ? { privateKey } : {}) };
}

/** What of an etcd3 error says "etcd cannot be reached" rather than "etcd refused this". */
function isUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (isRecoverableError(err)) return true;
  return /deadline|unavailable|circuit|closed|ECONNREFUSED|ECONNRESET|No connection established|connect/i.test(`${err.name} ${err.message}`);
}

/**
 * Opens the connection (lazily: the first call dials).
 * @example const etcd = connectEtcd({ endpoints: ['http://127.0.0.1:2379'], prefix: '/berth/', tls: null, timeoutMs: 2000 });
 */
export function connectEtcd(s: EtcdSettings): EtcdConnection {
  const hosts = [...s.endpoints];
  const creds = credentials(s.tls);
  const client = new Etcd3({
    hosts,
    ...(creds ? { credentials: creds } : {}),
    dialTimeout: s.timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
    faultHandling: {
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 1, backoff: new ConstantBackoff(50) }),
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
      // The watch manager calls next() for its first delay, so it takes a backoff already started.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }).next(),
    },
  });
  const where = hosts.join(', ');
  const unreachable = (what: string, cause?: unknown) =>
    unavailable(`${what}: the cluster catalog (etcd at ${where}) cannot be reached${cause instanceof Error ? `: ${cause.message}` : ''}`, cause);
  return {
    client,
    prefix: s.prefix,
    endpoints: hosts,
    async call(what, fn) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof BerthError) throw err;
        if (isUnreachable(err)) throw unreachable(what, err);
        throw new BerthError('Internal', `${what}: etcd answered with an error: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    },
    unavailable: unreachable,
    close: () => client.close(),
  };
}
