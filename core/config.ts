/**
 * Daemon configuration: the typed shape and the embedded defaults. Loading (YAML file,
 * BERTH_* environment, flags), validation that names unknown keys, and freezing live in
 * core/config-load.ts. Consumers take only the slice they read (Pick<Config, ...>).
 */
import { hostname } from 'node:os';
import { DEFAULT_ALLOWED_PREFIXES } from './target-policy.js';

export interface BackendInstanceConfig {
  /** Driver name: "dir" | "loop" | "btrfs" (and "fake" in tests). */
  readonly driver: string;
  /** Driver-specific settings (root, defaultSize, defaultFs, pool, ...), validated by the driver. */
  readonly [setting: string]: unknown;
}

export interface Config {
  /** This node's id: CSI NodeGetInfo node_id, attachment records. */
  readonly nodeId: string;
  /** SQLite state, managed mounts and default backend roots live under here. */
  readonly stateRoot: string;
  readonly defaultBackend: string;
  readonly backends: Readonly<Record<string, BackendInstanceConfig>>;
  /** How long an operation waits for another one on the same volume before Busy. */
  readonly lockWaitMs: number;
  /**
   * Reconcile again every this many ms while running (re-bind a target someone unmounted,
   * release what nothing references); 0 = only at start-up.
   */
  readonly reconcileIntervalMs: number;
  readonly log: { readonly level: 'debug' | 'info' | 'warn' | 'error' | 'silent' };
  /**
   * Group (gid; the config takes a name from /etc/group or a number) given the daemon's
   * unix sockets (admin, Docker, CSI; all mode 0660), so its members can use the `berth`
   * CLI without root. null: root only. Members can do anything the admin API can.
   */
  readonly socketGroup: number | null;
  readonly admin: {
    /** Unix socket of the admin REST API (mode 0660, group socketGroup). */
    readonly socket: string;
    /** Optional TCP listener ("127.0.0.1:7070"); requires token. */
    readonly tcp: string | null;
    readonly token: string | null;
  };
  readonly docker: {
    readonly enabled: boolean;
    /** Driver name Docker users pass to -d. */
    readonly driverName: string;
    readonly socket: string;
    /**
     * Optional TCP listener for the same plugin API ("127.0.0.1:9123"; port 0 = any free
     * port), announced to Docker by a spec file in specDir. The plugin protocol itself has
     * no authentication: without `tls` only loopback addresses are accepted; any other
     * address requires mutual TLS.
     */
    readonly tcp: string | null;
    /**
     * Mutual TLS for the TCP listener (all null = off). Every value is a file path; the
     * files are read at start, never passed on a command line. With TLS the listener
     * speaks HTTPS and accepts only clients whose certificate chains to `ca`, and the spec
     * file is <driverName>.json (Addr https://..., TLSConfig) instead of <driverName>.spec.
     */
    readonly tls: DockerTlsConfig;
    /** Where the spec file for the TCP listener goes; dockerd reads /etc/docker/plugins. */
    readonly specDir: string;
  };
  /**
   * Cluster mode: the catalog (volume names, specs, attachments, nodes) in etcd, shared by
   * every node. Off (embedded SQLite, one node) while etcd.endpoints is empty.
   */
  readonly cluster: {
    readonly etcd: {
      /** "http://host:port" / "https://host:port"; empty = single-node mode. */
      readonly endpoints: readonly string[];
      /** Every key berth writes starts with it; several berth clusters can share one etcd. */
      readonly prefix: string;
      /** Files (never the material itself): the CA for https endpoints, and a client certificate + key. */
      readonly tls: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null };
      /** Deadline of each etcd call: past it, the operation fails with Unavailable. */
      readonly timeoutMs: number;
    };
    /** The node lease's TTL: how long a silent node keeps what it holds. */
    readonly leaseTtlMs: number;
    /**
     * A node that has not renewed its lease for this long fences its exclusive volumes and
     * refuses new mounts; shorter than leaseTtlMs, so it happens before anyone may take over.
     */
    readonly selfFenceMs: number;
    /**
     * Run a fence agent beside the daemon (a separate process that outlives it): while it
     * lives, the node counts as alive and can be fenced, so a killed daemon never lets another
     * node take a volume its containers still write. Off: lease expiry alone never frees this
     * node's volumes; an operator must fence it (berth node fence).
     */
    readonly fenceAgent: boolean;
  };
  readonly csi: {
    readonly enabled: boolean;
    readonly endpoint: string;
    readonly mode: 'controller' | 'node' | 'both';
    readonly driverName: string;
    readonly maxVolumesPerNode: number;
    /**
     * Serve ephemeral inline volumes: a NodePublish whose volume_context says
     * csi.storage.k8s.io/ephemeral=true makes its volume, NodeUnpublish removes it. false:
     * such a publish is refused (FAILED_PRECONDITION), e.g. on nodes where pods must not
     * make storage of their own.
     */
    readonly ephemeral: boolean;
  };
  readonly targets: {
    /**
     * Consumer targets (admin --target, CSI staging / target paths, FlexVolume dirs) must lie
     * strictly below one of these absolute directories. System directories and the state
     * root are refused whatever this says (core/target-policy.ts).
     */
    readonly allowedPrefixes: readonly string[];
  };
}

export interface DockerTlsConfig {
  /**
   * PEM CA bundle: client certificates must chain to it, and the spec file hands it to
   * Docker (TLSConfig.CAFile) to verify berth's own certificate, as Docker's own
   * --tlsverify does with one CA for both sides.
   */
  readonly ca: string | null;
  /** berth's server certificate (PEM; its subjectAltName must match the address Docker dials). */
  readonly cert: string | null;
  /** berth's private key for `cert` (PEM). */
  readonly key: string | null;
  /** The client certificate the spec file tells Docker to present (TLSConfig.CertFile). */
  readonly clientCert: string | null;
  /** Its private key (TLSConfig.KeyFile). */
  readonly clientKey: string | null;
}

export const DEFAULT_STATE_ROOT = '/var/lib/berth';

/** The embedded defaults: `berth serve` with no config file runs on exactly these. */
export function defaultConfig(): Config {
  return {
    nodeId: hostname(),
    stateRoot: DEFAULT_STATE_ROOT,
    defaultBackend: 'local',
    // dir is the default; a loop instance is there too so a fresh install can make
    // size-enforced ext4/xfs/btrfs volumes (`--backend loop`) without writing a config.
    backends: { local: { driver: 'dir' }, loop: { driver: 'loop' } },
    lockWaitMs: 60_000,
    reconcileIntervalMs: 0,
    log: { level: 'info' },
    socketGroup: null,
    admin: { socket: '/run/berth/berth.sock', tcp: null, token: null },
    docker: {
      enabled: true, driverName: 'berth', socket: '/run/docker/plugins/berth.sock',
      tcp: null, specDir: '/etc/docker/plugins',
      tls: { ca: null, cert: null, key: null, clientCert: null, clientKey: null },
    },
    cluster: {
      etcd: { endpoints: [], prefix: '/berth/', tls: { ca: null, cert: null, key: null }, timeoutMs: 2_000 },
      leaseTtlMs: 10_000,
      selfFenceMs: 6_000,
      fenceAgent: true,
    },
    csi: { enabled: true, endpoint: '/run/berth/csi.sock', mode: 'both', driverName: 'csi.berth.dev', maxVolumesPerNode: 0, ephemeral: true },
    targets: { allowedPrefixes: [...DEFAULT_ALLOWED_PREFIXES] },
  };
}
