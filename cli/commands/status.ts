/** `berth status` (is the daemon up, what does it serve, where) and `berth version` (client and daemon). */
import type { CommandModule } from 'yargs';
import type { StatusResponse } from '../../frontends/admin/client.js';
import { clientFor, printerFor, type GlobalArgs } from '../context.js';
import { BERTH_VERSION } from '../version.js';

/** "3h 12m" / "4m 05s" / "12s": how long since `startedAt`. */
export function uptime(startedAt: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(startedAt)) / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

type Field = readonly [string, (x: StatusResponse) => string];

/** Which node does the cluster-wide work (core/leader.ts); older daemons do not say. */
export function leaderLine(x: Pick<StatusResponse, 'cluster' | 'nodeId'>): string {
  const c = x.cluster;
  if (!c || c.mode === 'embedded') return 'this node (single node)';
  if (c.leader === undefined) return '-';
  if (c.leader === null) return 'none right now (an election is under way)';
  return c.leader === x.nodeId ? `${c.leader} (this node)` : c.leader;
}

/** The table: health first, then where the daemon listens and keeps its state (older daemons send no `daemon`). */
const FIELDS: readonly Field[] = [
  ['Ready', (x) => (x.ready ? 'yes' : 'no')],
  ['Version', (x) => x.version],
  ['Node', (x) => x.nodeId],
  ['Up', (x) => `${uptime(x.startedAt)} (since ${x.startedAt})`],
  ['Volumes', (x) => String(x.volumes)],
  ['Backends', (x) => x.backends.join(', ')],
  ['Cluster', (x) => {
    const c = x.cluster;
    if (!c || c.mode === 'embedded') return 'single node (embedded catalog)';
    const lease = c.lease === null ? 'no lease (etcd unreachable)' : `lease ${c.lease}, renewed ${c.sinceRenewalMs ?? '?'} ms ago (TTL ${c.leaseTtlMs} ms)`;
    return `etcd ${c.endpoints.join(', ')} prefix ${c.prefix}; ${c.nodes} node(s); ${lease}`;
  }],
  ['Fencing', (x) => {
    const c = x.cluster;
    if (!c || c.mode === 'embedded') return '-';
    const state = c.selfFenced
      ? 'SELF-FENCED: the node lease was not renewed in time; its exclusive volumes are shut down here and new mounts are refused until it is back'
      : 'serving';
    const fences = c.fences.length ? `; fences: ${c.fences.map((f) => `${f.node} ${f.state}`).join(', ')}` : '';
    const recent = c.events.slice(0, 5).map((e) => `${e.volume} ${e.why} at ${e.at}`).join(', ');
    return `${state}${fences}${recent ? `; recent: ${recent}` : ''}`;
  }],
  ['Leader', leaderLine],
  ['PID', (x) => (x.daemon ? String(x.daemon.pid) : '-')],
  ['State root', (x) => x.daemon?.stateRoot ?? '-'],
  ['Config', (x) => (x.daemon ? (x.daemon.configFile ?? 'embedded defaults') : '-')],
  ['Admin API', (x) => (x.daemon ? [x.daemon.adminSocket, x.daemon.adminTcp && `tcp ${x.daemon.adminTcp}`].filter(Boolean).join(', ') : '-')],
  ['Docker plugin', (x) => {
    const d = x.daemon?.docker;
    if (!x.daemon) return '-';
    return d ? `${d.driverName} at ${d.socket}${d.tcp ? ` and ${d.tcp} (spec file)` : ''}` : 'disabled';
  }],
  ['CSI', (x) => (x.daemon ? (x.daemon.csi ? `${x.daemon.csi.driverName} at ${x.daemon.csi.endpoint} (${x.daemon.csi.mode})` : 'disabled') : '-')],
  ['Log level', (x) => x.daemon?.logLevel ?? '-'],
];

export const statusCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'status',
  describe: 'Show whether the daemon is up, what it serves and where (exit 1 when it cannot be reached)',
  handler: async (a) => {
    await (await printerFor(a)).item(await clientFor(a).status(), FIELDS);
  },
};

export const versionCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'version',
  describe: 'Print the client version and, when reachable, the daemon version',
  handler: async (a) => {
    const daemon = await clientFor(a).version().then((v) => v.version, () => null);
    await (await printerFor(a)).value({ client: BERTH_VERSION, daemon }, `client ${BERTH_VERSION}\ndaemon ${daemon ?? 'unreachable'}`);
  },
};
