/**
 * Private state against a real daemon: another local user ("nobody", run as uid/gid 65534 in
 * a child process) reads nothing of berth's (the state database and its WAL, the log, the
 * backend roots, the managed mounts of dir, loop and CSI volumes, the sockets), a member of
 * config socketGroup can use the admin API, and an install with older, looser modes is
 * tightened at start-up, logged once.
 *
 * The test root is made 0755 (mkdtemp makes it 0700), so that every refusal comes from the
 * modes berth set and not from the root's; a file 0644 in the root is the control that
 * nobody does read what is open to it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCsiClient, mountCap } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const NOBODY = 65534;
/** The operator group for socketGroup: any gid works (none is looked up), nobody is not in it. */
const OPERATORS = 47110;

const modeOf = (p: string) => (statSync(p).mode & 0o777).toString(8);

/** Paths `uid`:`gid` could read (cat a file, list a directory), checked by a shell running as them. */
function readableAs(uid: number, gid: number, paths: readonly string[]): string[] {
  const script = 'for p in "$@"; do if [ -d "$p" ]; then ls -- "$p" >/dev/null 2>&1 && echo "$p"; else cat -- "$p" >/dev/null 2>&1 && echo "$p"; fi; done';
  const r = spawnSync('/bin/sh', ['-c', script, 'probe', ...paths], { uid, gid, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0 && r.status !== 1) throw new Error(`probe failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** What connecting to each unix socket as `uid`:`gid` gives ("connected" or the errno) and, connected, GET /v1/volumes's status. */
function connectAs(uid: number, gid: number, sockets: readonly string[]): Record<string, string> {
  const script = `
    const http = require('node:http');
    const out = {};
    let left = process.argv.length - 1;
    for (const s of process.argv.slice(1)) {
      http.get({ socketPath: s, path: '/v1/volumes' }, (res) => { out[s] = 'HTTP ' + res.statusCode; res.resume(); if (--left === 0) console.log(JSON.stringify(out)); })
        .on('error', (e) => { out[s] = e.code; if (--left === 0) console.log(JSON.stringify(out)); });
    }`;
  const r = spawnSync(process.execPath, ['-e', script, ...sockets], { uid, gid, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`connect probe failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

async function daemonWithVolumes(root: TmpRoot): Promise<{ d: TestDaemon; files: string[]; volumeRoots: string[] }> {
  chmodSync(root.dir, 0o755);
  const d = await startTestDaemon(root, { csi: true, docker: true, config: { socketGroup: OPERATORS } });
  const files: string[] = [];
  const volumeRoots: string[] = [];
  for (const [name, backend] of [['pv-dir', 'local'], ['pv-loop', 'loop']] as const) {
    await d.client.createVolume({ name, backend, ...(backend === 'loop' ? { size: '16MiB' } : {}) });
    const { path } = await d.client.mount(name, { consumer: 'probe' });
    root.defer(() => d.client.unmount(name, { consumer: 'probe' }).catch(() => undefined));
    writeFileSync(join(path, 'secret'), `${name} data`);
    files.push(join(path, 'secret'));
    volumeRoots.push(path);
  }
  // A CSI volume, staged and published as kubelet would.
  const c = createCsiClient(d.csiEndpoint);
  root.defer(() => c.close());
  const { volume } = await c.controller('CreateVolume', {
    name: 'pv-csi', capacity_range: { required_bytes: String(16 * 2 ** 20) }, parameters: { backend: 'loop' }, volume_capabilities: [mountCap()],
  });
  const staging = root.path('kubelet', 'staging', 'pv-csi');
  const target = root.path('kubelet', 'pods', 'pv-csi', 'volume');
  await c.node('NodeStageVolume', { volume_id: volume.volume_id, staging_target_path: staging, volume_capability: mountCap() });
  await c.node('NodePublishVolume', { volume_id: volume.volume_id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  root.defer(async () => {
    await c.node('NodeUnpublishVolume', { volume_id: volume.volume_id, target_path: target }).catch(() => undefined);
    await c.node('NodeUnstageVolume', { volume_id: volume.volume_id, staging_target_path: staging }).catch(() => undefined);
  });
  const csiPath = (await d.client.inspectVolume('pv-csi')).path!;
  writeFileSync(join(csiPath, 'secret'), 'pv-csi data');
  files.push(join(csiPath, 'secret'));
  volumeRoots.push(csiPath);
  return { d, files, volumeRoots };
}

describe('private state', () => {
  it('nobody reads nothing of berth\'s; a socketGroup member uses the admin API', async () => {
    const root = roots.create('private');
    const { d, files, volumeRoots } = await daemonWithVolumes(root);
    const control = root.path('public.txt');
    writeFileSync(control, 'anyone may read this');
    chmodSync(control, 0o644);

    const state = d.stateRoot;
    const berthPaths = [
      state, `${state}/state.db`, `${state}/state.db-wal`, `${state}/state.db.reserve`, `${state}/daemon.pid`,
      `${state}/mounts`, `${state}/backends`, `${state}/backends/local`, `${state}/backends/loop`,
      ...readdirSync(`${state}/backends/loop`).filter((n) => n.endsWith('.img')).map((n) => `${state}/backends/loop/${n}`),
      ...volumeRoots, ...files, d.logFile,
    ];
    expect(berthPaths.length).toBeGreaterThan(15);
    expect(readableAs(NOBODY, NOBODY, [control, ...berthPaths])).toEqual([control]);
    // Not even the operator group reads state or data: it is given the sockets only.
    expect(readableAs(NOBODY, OPERATORS, berthPaths)).toEqual([]);

    const sockets = [d.socket, d.dockerSocket, d.csiEndpoint];
    for (const s of sockets) expect({ s, mode: modeOf(s), gid: statSync(s).gid }).toEqual({ s, mode: '660', gid: OPERATORS });
    expect(connectAs(NOBODY, NOBODY, sockets)).toEqual(Object.fromEntries(sockets.map((s) => [s, 'EACCES'])));
    expect(connectAs(NOBODY, OPERATORS, [d.socket])).toEqual({ [d.socket]: 'HTTP 200' });

    // What a container sees as the volume's root keeps the mode it expects (like Docker's _data).
    for (const v of volumeRoots) expect({ v, mode: modeOf(v) }).toEqual({ v, mode: '755' });
    expect([state, `${state}/mounts`, `${state}/backends/local`, `${state}/backends/loop`].map(modeOf)).toEqual(['700', '700', '700', '700']);
    expect([`${state}/state.db`, `${state}/state.db-wal`].map(modeOf)).toEqual(['600', '600']);
  });

  it('an install with older, looser modes is tightened at start-up, logged once', async () => {
    const root = roots.create('tighten');
    chmodSync(root.dir, 0o755);
    const d = await startTestDaemon(root);
    await d.client.createVolume({ name: 'old', backend: 'loop', size: '16MiB' });
    await d.client.mount('old', { consumer: 'c' });
    root.defer(() => d.client.unmount('old', { consumer: 'c' }).catch(() => undefined));
    await d.kill(); // kill -9: the WAL stays
    const state = d.stateRoot;
    // What an older berth left: 0755 directories, a 0644 database and WAL, a 0644 log.
    const loose: Array<[string, number]> = [
      [state, 0o755], [`${state}/mounts`, 0o755], [`${state}/backends/local`, 0o711], [`${state}/backends/loop`, 0o755],
      [`${state}/state.db`, 0o644], [`${state}/state.db-wal`, 0o644], [d.logFile, 0o644],
    ];
    const tightened = () => d.logs().split('\n').filter((l) => l.includes('took access to berth'));
    // (The first start already tightened the log file the harness opened 0644.)
    const before = tightened().length;
    for (const [p, m] of loose) chmodSync(p, m);
    await d.start();
    expect(loose.map(([p]) => [p, modeOf(p)])).toEqual([
      [state, '700'], [`${state}/mounts`, '700'], [`${state}/backends/local`, '700'], [`${state}/backends/loop`, '700'],
      [`${state}/state.db`, '600'], [`${state}/state.db-wal`, '600'], [d.logFile, '640'],
    ]);
    expect(tightened()).toHaveLength(before + 1);
    expect(tightened().at(-1)).toContain(`${state}/state.db 644 -> 600`);
    expect(tightened().at(-1)).toContain(`${state} 755 -> 700`);
    // The mount survived the restart, and nothing is logged again next time.
    expect((await d.client.path('old'))).toMatch(/\/mounts\/vol-[0-9a-z]+\/data$/);
    await d.stop();
    await d.start();
    expect(tightened()).toHaveLength(before + 1);
  });
});
