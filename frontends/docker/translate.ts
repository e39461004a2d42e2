/**
 * Docker volume plugin bodies <-> VolumeService calls. Pure functions: no I/O, no state.
 * Docker sends JSON with no Content-Type, sometimes followed by a newline, and an empty
 * body for Activate/Capabilities; everything here works on the raw text.
 */
import {
  formatSize, invalidArgument, optionFieldNames, parseVolumeOptions, renameErrorField,
  type ClusterStatus, type CreateVolumeRequest, type Frontend, type Volume,
} from '../../core/index.js';

/** The request body Docker sent, as a plain object ({} when empty). */
export type DockerBody = Readonly<Record<string, unknown>>;

export function parseBody(text: string): DockerBody {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch (err) {
    throw invalidArgument('body', `request body is not valid JSON (${(err as Error).message})`);
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgument('body', 'request body must be a JSON object');
  }
  return value as DockerBody;
}

/** The volume name every method but Activate/List/Capabilities carries. */
export function volumeName(body: DockerBody): string {
  const name = body.Name;
  if (typeof name !== 'string' || name === '') {
    throw invalidArgument('Name', 'the volume name is missing');
  }
  return name;
}

/** Create {"Name","Opts"} -> CreateVolumeRequest; options go through the shared core parser. */
export function createRequest(body: DockerBody): CreateVolumeRequest {
  const name = volumeName(body);
  const opts = body.Opts;
  if (opts !== undefined && opts !== null && (typeof opts !== 'object' || Array.isArray(opts))) {
    throw invalidArgument('Opts', 'options must be a JSON object of strings');
  }
  const o = opts as Record<string, unknown> | null | undefined;
  return { name, ...parseVolumeOptions(o) };
}

export interface DockerConsumer {
  readonly consumer: string;
  readonly frontend: Frontend;
}

/**
 * An error from creating the volume of `body`, naming the option as the user typed it
 * ("opts.backend", "opts.fsType"): the parser already does, the core and the backend name
 * their own fields ("backend", "fs").
 */
export function createError(err: unknown, body: DockerBody): unknown {
  const opts = body.Opts;
  return opts !== null && typeof opts === 'object' && !Array.isArray(opts)
    ? renameErrorField(err, optionFieldNames(opts as Record<string, unknown>))
    : err;
}

/**
 * Mount/Unmount ID -> mount reference. Docker gives each container its own 64-hex ID;
 * dvdcli sends none, so all dvdcli mounts share the single reference "dvdcli".
 */
export function consumerFor(body: DockerBody): DockerConsumer {
  const id = body.ID;
  if (id === undefined || id === null || id === '') return { consumer: 'dvdcli', frontend: 'dvdcli' };
  if (typeof id !== 'string') throw invalidArgument('ID', 'the mount ID must be a string');
  return { consumer: `docker:${id}`, frontend: 'docker' };
}

/** RFC 3339 without fractional seconds (Docker parses it into a Go time.Time). */
export function rfc3339(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return new Date(0).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The path Docker should bind-mount: set only while the volume is mounted. */
export function mountpoint(v: Volume): string {
  return v.mounts.length > 0 && v.path !== null ? v.path : '';
}

export interface DockerListEntry {
  readonly Name: string;
  readonly Mountpoint: string;
}

export function listEntry(v: Volume): DockerListEntry {
  return { Name: v.name, Mountpoint: mountpoint(v) };
}

export interface DockerVolume extends DockerListEntry {
  readonly CreatedAt: string;
  readonly Status: Readonly<Record<string, unknown>>;
}

/** Get's answer; `docker volume inspect` prints Status as given. Cheap: no I/O. */
export function dockerVolume(v: Volume): DockerVolume {
  return {
    Name: v.name,
    Mountpoint: mountpoint(v),
    CreatedAt: rfc3339(v.createdAt),
    Status: {
      id: v.id,
      backend: v.backend,
      size: v.sizeBytes === 0 ? 'unlimited' : formatSize(v.sizeBytes),
      sizeBytes: v.sizeBytes,
      fs: v.fsType ?? 'none',
      mode: v.volumeMode,
      accessMode: v.accessMode,
      state: v.status,
      // Cluster mode: the node whose storage holds a volume of a node-local backend.
      ...(v.node !== null ? { node: v.node } : {}),
      attachments: v.attachments.map((a) => ({
        node: a.node,
        device: a.device,
        readOnly: a.readOnly,
        implicit: a.implicit,
      })),
      mounts: v.mounts.length,
      ...(Object.keys(v.labels).length > 0 ? { labels: v.labels } : {}),
      ...(Object.keys(v.options).length > 0 ? { options: v.options } : {}),
      ...(v.source ? { source: `${v.source.kind}:${v.source.id}` } : {}),
    },
  };
}

/**
 * Docker scope: "global" when this daemon is a member of a cluster, "local" on its own.
 * In cluster mode a volume name means one volume on every node (the catalog is cluster-wide):
 * create it once, and any node's Docker finds, mounts and removes that same volume, which is
 * what "global" tells Docker and orchestrators built on it. A single node (the embedded
 * catalog) knows only its own volumes, even on a shared backend: "local", whatever the backends.
 * dockerd asks once per driver name and keeps the answer until it restarts.
 */
export function scopeOf(cluster: ClusterStatus): 'local' | 'global' {
  return cluster.mode === 'embedded' ? 'local' : 'global';
}
