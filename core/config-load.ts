/**
 * Loads the daemon configuration once: embedded defaults <- YAML file <- BERTH_* environment
 * <- command-line flags, then validates (zod), checks cross-field rules and deep-freezes.
 *
 * - The default file (/etc/berth/config.yaml) may be missing: then the embedded defaults apply.
 *   An explicit `--config` file that is missing is an error.
 * - An unknown key anywhere in the file is an error naming the dotted key and suggesting the
 *   closest known key (backend instance settings are the driver's to validate, except `driver`).
 * - Relative paths are resolved against the config file's directory (file values) or the
 *   working directory (environment and flags), so the daemon never depends on its cwd later.
 */
import { existsSync, readFileSync } from 'node:fs';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { defaultConfig, type Config } from './config.js';
import { BerthError, invalidArgument } from './errors.js';
import { GROUP_FILE, lookupGroupId } from './os/groups.js';
import { closest } from './suggest.js';
import { checkAllowedPrefix } from './target-policy.js';

export const DEFAULT_CONFIG_FILE = '/etc/berth/config.yaml';

/** Environment variables the daemon reads, in the order documented in README.md. */
export const ENV_VARS = {
  BERTH_CONFIG: 'config file path (like --config)',
  BERTH_NODE_ID: 'nodeId',
  BERTH_STATE_ROOT: 'stateRoot',
  BERTH_DEFAULT_BACKEND: 'defaultBackend',
  BERTH_LOCK_WAIT_MS: 'lockWaitMs',
  BERTH_RECONCILE_INTERVAL_MS: 'reconcileIntervalMs',
  BERTH_LOG_LEVEL: 'log.level',
  BERTH_SOCKET_GROUP: 'socketGroup',
  BERTH_SOCKET: 'admin.socket',
  BERTH_ADMIN_TCP: 'admin.tcp',
  BERTH_ADMIN_TOKEN: 'admin.token',
  BERTH_DOCKER_ENABLED: 'docker.enabled',
  BERTH_DOCKER_DRIVER_NAME: 'docker.driverName',
  BERTH_DOCKER_SOCKET: 'docker.socket',
  BERTH_DOCKER_TCP: 'docker.tcp',
  BERTH_DOCKER_TLS_CA: 'docker.tls.ca',
  BERTH_DOCKER_TLS_CERT: 'docker.tls.cert',
  BERTH_DOCKER_TLS_KEY: 'docker.tls.key',
  BERTH_DOCKER_TLS_CLIENT_CERT: 'docker.tls.clientCert',
  BERTH_DOCKER_TLS_CLIENT_KEY: 'docker.tls.clientKey',
  BERTH_DOCKER_SPEC_DIR: 'docker.specDir',
  BERTH_ETCD_ENDPOINTS: 'cluster.etcd.endpoints',
  BERTH_ETCD_PREFIX: 'cluster.etcd.prefix',
  BERTH_ETCD_CA: 'cluster.etcd.tls.ca',
  BERTH_ETCD_CERT: 'cluster.etcd.tls.cert',
  BERTH_ETCD_KEY: 'cluster.etcd.tls.key',
  BERTH_ETCD_TIMEOUT_MS: 'cluster.etcd.timeoutMs',
  BERTH_LEASE_TTL_MS: 'cluster.leaseTtlMs',
  BERTH_SELF_FENCE_MS: 'cluster.selfFenceMs',
  BERTH_FENCE_AGENT: 'cluster.fenceAgent',
  BERTH_CSI_ENABLED: 'csi.enabled',
  BERTH_CSI_ENDPOINT: 'csi.endpoint',
  BERTH_CSI_MODE: 'csi.mode',
  BERTH_CSI_DRIVER_NAME: 'csi.driverName',
  BERTH_CSI_MAX_VOLUMES_PER_NODE: 'csi.maxVolumesPerNode',
  BERTH_CSI_EPHEMERAL: 'csi.ephemeral',
  BERTH_TARGETS_ALLOWED_PREFIXES: 'targets.allowedPrefixes',
} as const;

/** Environment variables other berth programs read (the CLI, test helpers); not config keys. */
const OTHER_KNOWN_ENV = new Set(['BERTH_OUTPUT', 'BERTH_TOKEN', 'BERTH_URL', 'BERTH_BIN']);

/** Flags `berth serve` accepts besides --config; each overrides one key. */
export interface ConfigFlags {
  readonly nodeId?: string;
  readonly stateRoot?: string;
  readonly defaultBackend?: string;
  readonly logLevel?: string;
  readonly socket?: string;
  readonly adminTcp?: string;
  readonly dockerEnabled?: boolean;
  readonly dockerSocket?: string;
  readonly dockerTcp?: string;
  readonly csiEnabled?: boolean;
  readonly csiEndpoint?: string;
  /** Comma-separated etcd endpoints (cluster mode). TLS files only come from the file or the environment. */
  readonly etcdEndpoints?: string;
  readonly etcdPrefix?: string;
}

const FLAG_KEYS: Record<keyof ConfigFlags, string> = {
  nodeId: 'nodeId',
  stateRoot: 'stateRoot',
  defaultBackend: 'defaultBackend',
  logLevel: 'log.level',
  socket: 'admin.socket',
  adminTcp: 'admin.tcp',
  dockerEnabled: 'docker.enabled',
  dockerSocket: 'docker.socket',
  dockerTcp: 'docker.tcp',
  csiEnabled: 'csi.enabled',
  csiEndpoint: 'csi.endpoint',
  etcdEndpoints: 'cluster.etcd.endpoints',
  etcdPrefix: 'cluster.etcd.prefix',
};

/** Keys whose values are filesystem paths (resolved to absolute paths). */
const PATH_KEYS = new Set([
  'stateRoot', 'admin.socket', 'docker.socket', 'docker.specDir', 'csi.endpoint',
  'docker.tls.ca', 'docker.tls.cert', 'docker.tls.key', 'docker.tls.clientCert', 'docker.tls.clientKey',
  'cluster.etcd.tls.ca', 'cluster.etcd.tls.cert', 'cluster.etcd.tls.key',
]);

/** Keys (and their variables) that existed once: naming them gets an explanation, not a guess. */
const REMOVED_KEYS: Readonly<Record<string, string>> = {
  'docker.tcpAllowRemote': 'docker.tcpAllowRemote was removed: a docker.tcp address other than loopback now requires mutual TLS (docker.tls.ca, docker.tls.cert, docker.tls.key; see README "Remote Docker over TLS")',
};
const REMOVED_ENV: Readonly<Record<string, string>> = { BERTH_DOCKER_TCP_ALLOW_REMOTE: 'docker.tcpAllowRemote' };

export interface LoadConfigInput {
  /** Explicit config file (--config or BERTH_CONFIG); must exist. */
  readonly file?: string;
  /** Where to look when no file is given; missing is fine. Default /etc/berth/config.yaml. */
  readonly defaultFile?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly flags?: ConfigFlags;
  /** Told about ignored things (an unknown BERTH_* variable) that are not worth refusing to start. */
  readonly onWarning?: (message: string) => void;
  readonly cwd?: string;
  /** Where socketGroup names are looked up (default /etc/group). */
  readonly groupFile?: string;
}

const nonEmpty = z.string().min(1, 'must not be empty');
/** The largest gid (2^32 - 2; 2^32 - 1 is "no change" to chown). */
const MAX_GID = 4_294_967_294;
const isPort = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
const isPortOrZero = (n: number) => Number.isInteger(n) && n >= 0 && n <= 65535;
/** "host:port", "[v6]:port" or ":port" (= 127.0.0.1). */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]*):\d{1,5}$/;
const backendInstance = z.looseObject({ driver: nonEmpty });
const schema = z.strictObject({
  nodeId: nonEmpty.max(128),
  stateRoot: nonEmpty,
  defaultBackend: nonEmpty,
  backends: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'backend instance names use [A-Za-z0-9_.-]'), backendInstance),
  lockWaitMs: z.number().int().min(0).max(3_600_000),
  reconcileIntervalMs: z.number().int().min(0).max(86_400_000)
    .refine((v) => v === 0 || v >= 1_000, 'must be 0 (only at start-up) or at least 1000'),
  log: z.strictObject({ level: z.enum(['debug', 'info', 'warn', 'error', 'silent']) }),
  socketGroup: z.union([
    z.number().int().min(0).max(MAX_GID),
    nonEmpty.regex(/^[^\s:]+$/, 'must be a group name or a numeric gid'),
  ]).nullable(),
  admin: z.strictObject({
    socket: nonEmpty,
    tcp: z
      .string()
      .regex(/^[^\s:]*:\d{1,5}$/, 'must be "host:port"')
      .refine((v) => isPort(Number(v.slice(v.lastIndexOf(':') + 1))), 'the port must be 1-65535')
      .nullable(),
    token: nonEmpty.nullable(),
  }),
  docker: z.strictObject({
    enabled: z.boolean(),
    driverName: nonEmpty,
    socket: nonEmpty,
    tcp: z
      .string()
      .regex(HOST_PORT, 'must be "host:port", e.g. "127.0.0.1:9123" or "[::1]:9123" (port 0 = any free port)')
      .refine((v) => isPortOrZero(Number(v.slice(v.lastIndexOf(':') + 1))), 'the port must be 0-65535')
      .nullable(),
    tls: z.strictObject({
      ca: nonEmpty.nullable(),
      cert: nonEmpty.nullable(),
      key: nonEmpty.nullable(),
      clientCert: nonEmpty.nullable(),
      clientKey: nonEmpty.nullable(),
    }),
    specDir: nonEmpty,
  }),
  cluster: z.strictObject({
    etcd: z.strictObject({
      endpoints: z.array(z.string().regex(/^https?:\/\/(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):\d{1,5}$/, 'must be "http://host:port" or "https://host:port"')).max(16),
      prefix: z.string().regex(/^\/[A-Za-z0-9_.\-/]*\/$/, 'must start and end with "/" and use [A-Za-z0-9_.-/]'),
      tls: z.strictObject({ ca: nonEmpty.nullable(), cert: nonEmpty.nullable(), key: nonEmpty.nullable() }),
      timeoutMs: z.number().int().min(100).max(60_000),
    }),
    leaseTtlMs: z.number().int().min(2_000).max(600_000),
    selfFenceMs: z.number().int().min(500).max(600_000),
    fenceAgent: z.boolean(),
  }),
  csi: z.strictObject({
    enabled: z.boolean(),
    endpoint: nonEmpty,
    mode: z.enum(['controller', 'node', 'both']),
    driverName: nonEmpty,
    maxVolumesPerNode: z.number().int().min(0),
    ephemeral: z.boolean(),
  }),
  // Entries are checked one by one in checkTargetPrefixes (absolute, normalized, no system path).
  targets: z.strictObject({ allowedPrefixes: z.array(z.string()) }),
});

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Builds the daemon's Config; throws BerthError InvalidArgument naming the bad key.
 * @example const config = loadConfig({ file: argv.config, env: process.env, flags: { stateRoot: '/tmp/b' } });
 */
export function loadConfig(input: LoadConfigInput): Config {
  const cwd = input.cwd ?? process.cwd();
  let merged: Json = defaultConfig() as unknown as Json;

  // An empty BERTH_CONFIG means none (the managed plugin's settable default).
  const explicit = input.file ?? (input.env.BERTH_CONFIG || undefined);
  const file = explicit ?? input.defaultFile ?? DEFAULT_CONFIG_FILE;
  if (explicit !== undefined || existsSync(file)) {
    const fromFile = readConfigFile(resolve(cwd, file));
    merged = mergeLayer(merged, fromFile, dirname(resolve(cwd, file)));
  }
  merged = mergeLayer(merged, envLayer(input.env, input.onWarning), cwd);
  merged = mergeLayer(merged, flagLayer(input.flags ?? {}), cwd);

  const parsed = schema.safeParse(merged);
  if (!parsed.success) throw fromZodError(parsed.error, merged);
  const config = {
    ...parsed.data, targets: { allowedPrefixes: checkTargetPrefixes(parsed.data) }, socketGroup: resolveGroup(parsed.data.socketGroup, input.groupFile),
  } as Config;
  checkCrossField(config);
  return deepFreeze(config);
}

/** socketGroup as a gid: a number (or digits) as given, a name from the group file. */
function resolveGroup(value: number | string | null, file = GROUP_FILE): number | null {
  if (value === null || typeof value === 'number') return value;
  if (/^\d+$/.test(value)) {
    const gid = Number(value);
    if (gid > MAX_GID) throw invalidArgument('socketGroup', `gid ${value} is out of range (0-${MAX_GID})`);
    return gid;
  }
  const gid = lookupGroupId(value, file);
  if (gid === null) {
    throw invalidArgument('socketGroup', `unknown group "${value}": ${file} has no such group (give a group from directory services by its numeric gid)`);
  }
  return gid;
}

function readConfigFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalidArgument('config', `cannot read config file ${path}: ${code === 'ENOENT' ? 'no such file' : String(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalidArgument('config', `${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isObject(doc)) throw invalidArgument('config', `${path} must hold a mapping at the top level`);
  checkUnknownKeys(doc, path);
  return doc;
}

/** The known key tree, taken from the defaults so it can never drift from the Config type. */
function knownKeys(prefix: string): string[] | null {
  if (prefix.startsWith('backends.')) return null; // instance settings belong to the driver
  let node: unknown = defaultConfig();
  for (const part of prefix ? prefix.split('.') : []) node = isObject(node) ? node[part] : undefined;
  return isObject(node) ? Object.keys(node) : null;
}

function allKnownPaths(): string[] {
  const out: string[] = [];
  const walk = (node: Json, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.push(p);
      if (isObject(v) && k !== 'backends') walk(v, p);
    }
  };
  walk(defaultConfig() as unknown as Json, '');
  return out;
}

function checkUnknownKeys(doc: Json, source: string, prefix = ''): void {
  const known = knownKeys(prefix);
  if (known === null) return;
  for (const [key, value] of Object.entries(doc)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (REMOVED_KEYS[path]) throw new BerthError('InvalidArgument', `${REMOVED_KEYS[path]} (in ${source})`, { field: path });
    if (!known.includes(key)) {
      const guess = closest(path, allKnownPaths());
      throw new BerthError('InvalidArgument', `unknown config key "${path}" in ${source}${guess ? `; did you mean "${guess}"?` : ''}`, { field: path });
    }
    if (isObject(value) && key !== 'backends') checkUnknownKeys(value, source, path);
  }
}

function envLayer(env: LoadConfigInput['env'], onWarning?: (m: string) => void): Json {
  const out: Json = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('BERTH_') || raw === undefined) continue;
    if (name === 'BERTH_CONFIG' || OTHER_KNOWN_ENV.has(name)) continue;
    const removed = REMOVED_ENV[name];
    if (removed) throw new BerthError('InvalidArgument', `${name}: ${REMOVED_KEYS[removed]}`, { field: name });
    const key = (ENV_VARS as Record<string, string>)[name];
    if (key === undefined) {
      const guess = closest(name, Object.keys(ENV_VARS));
      onWarning?.(`ignoring unknown environment variable ${name}${guess ? `; did you mean ${guess}?` : ''}`);
      continue;
    }
    setPath(out, key, coerceEnv(name, key, raw));
  }
  return out;
}

function coerceEnv(name: string, key: string, raw: string): unknown {
  const defaults = defaultConfig() as unknown as Json;
  const sample = key.split('.').reduce<unknown>((n, p) => (isObject(n) ? n[p] : undefined), defaults);
  if (typeof sample === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new BerthError('InvalidArgument', `${name} must be true or false, got "${raw}"`, { field: name });
  }
  if (typeof sample === 'number') {
    if (!/^\d+$/.test(raw)) throw new BerthError('InvalidArgument', `${name} must be a whole number, got "${raw}"`, { field: name });
    return Number(raw);
  }
  const nullable = key === 'admin.tcp' || key === 'admin.token' || key === 'docker.tcp' || key === 'socketGroup' || key.startsWith('docker.tls.') ||
    key.startsWith('cluster.etcd.tls.');
  if (nullable) return raw === '' ? null : raw;
  // Lists: etcd endpoints are comma-separated (URLs hold colons); paths colon-separated, like PATH. Empty = no entries.
  if (Array.isArray(sample)) return key === 'cluster.etcd.endpoints' ? listValue(raw) : raw === '' ? [] : raw.split(':');
  return raw;
}

function flagLayer(flags: ConfigFlags): Json {
  const out: Json = {};
  for (const [flag, value] of Object.entries(flags)) {
    const key = FLAG_KEYS[flag as keyof ConfigFlags];
    if (key === undefined || value === undefined) continue;
    setPath(out, key, flag === 'etcdEndpoints' && typeof value === 'string' ? listValue(value) : value);
  }
  return out;
}

/** "a, b,c" -> ['a', 'b', 'c'] (empty -> []). */
function listValue(raw: string): string[] {
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Deep-merges one layer over the config; `backends` is replaced whole so a file can drop "local". */
function mergeLayer(base: Json, layer: Json, pathBase: string, prefix = ''): Json {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(layer)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isObject(value) && isObject(base[key]) && key !== 'backends') {
      out[key] = mergeLayer(base[key] as Json, value, pathBase, path);
    } else if (PATH_KEYS.has(path) && typeof value === 'string' && value !== '') {
      out[key] = resolvePathValue(value, pathBase);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function resolvePathValue(value: string, base: string): string {
  if (value.startsWith('unix://')) {
    const p = value.slice('unix://'.length);
    return isAbsolute(p) ? p : resolve(base, p);
  }
  return isAbsolute(value) ? value : resolve(base, value);
}

/**
 * targets.allowedPrefixes, normalized. Each entry names itself in the error: relative paths
 * are refused (not resolved: a prefix decides where mounts may go), so are system
 * directories and anything inside the state root.
 */
function checkTargetPrefixes(c: Pick<Config, 'stateRoot' | 'targets'>): string[] {
  const out: string[] = [];
  for (const [i, p] of c.targets.allowedPrefixes.entries()) {
    const path = checkAllowedPrefix(p, `targets.allowedPrefixes[${i}]`, c.stateRoot);
    if (!out.includes(path)) out.push(path);
  }
  return out;
}

function checkCrossField(c: Config): void {
  if (!(c.defaultBackend in c.backends)) {
    const guess = closest(c.defaultBackend, Object.keys(c.backends));
    throw invalidArgument('defaultBackend', `"${c.defaultBackend}" is not a configured backend instance${guess ? `; did you mean "${guess}"?` : ''} (configured: ${Object.keys(c.backends).join(', ') || 'none'})`);
  }
  if (c.admin.tcp !== null && c.admin.token === null) {
    throw invalidArgument('admin.token', 'a TCP admin listener (admin.tcp) requires a bearer token (admin.token / BERTH_ADMIN_TOKEN)');
  }
  if (c.docker.enabled) checkDockerTcp(c.docker);
  checkCluster(c.cluster);
  const sockets: Array<[string, string]> = [['admin.socket', c.admin.socket]];
  if (c.docker.enabled) sockets.push(['docker.socket', c.docker.socket]);
  if (c.csi.enabled) sockets.push(['csi.endpoint', c.csi.endpoint]);
  for (let i = 0; i < sockets.length; i++) {
    for (let j = i + 1; j < sockets.length; j++) {
      if (sockets[i]![1] === sockets[j]![1]) {
        throw invalidArgument(sockets[j]![0], `uses the same path as ${sockets[i]![0]} (${sockets[j]![1]})`);
      }
    }
  }
}

/**
 * The Docker plugin protocol has no authentication of its own: whoever reaches docker.tcp
 * can create, mount and remove volumes (and so read and write their data). A plain listener
 * is therefore loopback only; any other address requires mutual TLS (docker.tls), and TLS
 * is all or nothing. The driver name becomes the spec file's name.
 */
function checkDockerTcp(d: Config['docker']): void {
  const t = d.tls;
  const set = (['ca', 'cert', 'key', 'clientCert', 'clientKey'] as const).filter((k) => t[k] !== null);
  if (set.length > 0) {
    if (d.tcp === null) throw invalidArgument('docker.tcp', `docker.tls.${set[0]} is set but docker.tcp is not: TLS applies to the TCP listener only (set docker.tcp, e.g. "0.0.0.0:9443")`);
    for (const k of ['ca', 'cert', 'key', 'clientCert', 'clientKey'] as const) {
      if (t[k] === null) throw invalidArgument(`docker.tls.${k}`, `is required with docker.tls.${set[0]}: ${TLS_KEY_ROLE[k]}`);
    }
  }
  if (d.tcp === null) return;
  const host = d.tcp.slice(0, d.tcp.lastIndexOf(':'));
  if (set.length === 0 && !isLoopbackHost(host)) {
    throw invalidArgument('docker.tls', `docker.tcp "${d.tcp}" is not a loopback address, and the Docker plugin protocol has no authentication: anything that could reach the port could create, mount and remove volumes. A listener on another address requires mutual TLS: set docker.tls.ca, docker.tls.cert, docker.tls.key, docker.tls.clientCert and docker.tls.clientKey (BERTH_DOCKER_TLS_*), or use 127.0.0.1, [::1] or localhost`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(d.driverName)) {
    throw invalidArgument('docker.driverName', `"${d.driverName}" cannot name a plugin spec file (${d.specDir}/<driverName>.spec or .json); use [A-Za-z0-9_.-]`);
  }
}

/**
 * Cluster mode is on when endpoints are given. Self-fencing must happen before the lease can
 * expire at etcd, with room for the fence itself; https needs the CA to check etcd's certificate,
 * and TLS files make no sense against plain http.
 */
function checkCluster(c: Config['cluster']): void {
  if (c.selfFenceMs > c.leaseTtlMs - 1_000) {
    throw invalidArgument('cluster.selfFenceMs', `${c.selfFenceMs} must be at least 1000 ms shorter than cluster.leaseTtlMs (${c.leaseTtlMs}): a node fences itself before its lease can expire`);
  }
  const tls = c.etcd.tls;
  const https = c.etcd.endpoints.filter((e) => e.startsWith('https://'));
  if (https.length > 0 && https.length !== c.etcd.endpoints.length) {
    throw invalidArgument('cluster.etcd.endpoints', 'mixes http:// and https:// endpoints; use one scheme for all');
  }
  if (https.length > 0 && tls.ca === null) throw invalidArgument('cluster.etcd.tls.ca', 'https endpoints need the CA file that signed etcd\'s certificate');
  if (https.length === 0 && (tls.ca !== null || tls.cert !== null || tls.key !== null)) {
    const key = tls.ca !== null ? 'ca' : tls.cert !== null ? 'cert' : 'key';
    throw invalidArgument(`cluster.etcd.tls.${key}`, 'TLS files are set but the endpoints are plain http://; use https:// endpoints');
  }
  if ((tls.cert === null) !== (tls.key === null)) {
    throw invalidArgument(tls.cert === null ? 'cluster.etcd.tls.cert' : 'cluster.etcd.tls.key', 'a client certificate needs both cert and key');
  }
}

const TLS_KEY_ROLE = {
  ca: 'the CA bundle client certificates must chain to (also handed to Docker to verify berth)',
  cert: "berth's server certificate",
  key: "the private key of berth's server certificate",
  clientCert: 'the client certificate the spec file tells Docker to present',
  clientKey: 'the private key of that client certificate',
} as const;

/** 127.0.0.0/8, ::1 (also IPv4-mapped 127.x), "localhost", or empty (which means 127.0.0.1). */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === '' || h.toLowerCase() === 'localhost') return true;
  if (isIPv4(h)) return loopback().check(h, 'ipv4');
  if (isIPv6(h)) return loopback().check(h, 'ipv6');
  return false;
}

function loopback(): BlockList {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4'); // also matches ::ffff:127.x.x.x
  list.addAddress('::1', 'ipv6');
  return list;
}

function fromZodError(err: z.ZodError, merged: Json): BerthError {
  const issue = err.issues[0]!;
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const key = path ? `${path}.${issue.keys[0]}` : String(issue.keys[0]);
    const guess = closest(key, allKnownPaths());
    return new BerthError('InvalidArgument', `unknown config key "${key}"${guess ? `; did you mean "${guess}"?` : ''}`, { field: key });
  }
  const got = issue.path.reduce<unknown>((n, p) => (isObject(n) ? n[String(p)] : undefined), merged);
  return invalidArgument(path || 'config', `${issue.message} (got ${JSON.stringify(got) ?? 'nothing'})`);
}

function setPath(obj: Json, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = obj;
  for (const p of parts.slice(0, -1)) {
    if (!isObject(node[p])) node[p] = {};
    node = node[p] as Json;
  }
  node[parts.at(-1)!] = value;
}

function deepFreeze<T>(value: T): T {
  if (isObject(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
