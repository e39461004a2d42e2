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
     * port), announced to Docker by <specDir>/<driverName>.spec. The plugin protocol has no
     * authentication: anything that reaches the port can create, mount and remove volumes,
     * so only loopback addresses are accepted unless tcpAllowRemote is true.
     */
    readonly tcp: string | null;
    /** Accept a non-loopback docker.tcp address (anyone who can reach it drives volumes). */
    readonly tcpAllowRemote: boolean;
    /** Where the .spec file for the TCP listener goes; dockerd reads /etc/docker/plugins. */
    readonly specDir: string;
  };
  readonly csi: {
    readonly enabled: boolean;
    readonly endpoint: string;
    readonly mode: 'controller' | 'node' | 'both';
    readonly driverName: string;
    readonly maxVolumesPerNode: number;
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
      tcp: null, tcpAllowRemote: false, specDir: '/etc/docker/plugins',
    },
    csi: { enabled: true, endpoint: '/run/berth/csi.sock', mode: 'both', driverName: 'csi.berth.dev', maxVolumesPerNode: 0 },
    targets: { allowedPrefixes: [...DEFAULT_ALLOWED_PREFIXES] },
  };
}
