// Cluster mode, part 2 (issue 11) on real parts: one etcd (its own free ports), three berth
// daemons, each in a mount namespace of its own (a node that serves the test dockerd stays in
// the host's, where dockerd finds its mounts), a shared loop backend whose root is one
// directory on the host, real ext4 and xfs images, real loop devices, the kernel's shutdown
// ioctl, the real Docker engine, gRPC CSI and the dvdcli executable.
//
// - Daemon killed under a live writer (ext4 and xfs): a writer on node A appends numbered,
//   fsync'd records. kill -9 of A's daemon; B's mount is refused naming A, also after A's
//   daemon lease expired (its fence agent lives: the writer still writes). `berth node fence`
//   on B: A's agent shuts the filesystem down; the writer's writes fail with EIO and the image
//   no longer changes; B mounts and reads every record the writer was told was synced, in
//   order; A's daemon comes back, finds the volume moved and lets its copy go; fsck is clean.
// - Without a fence agent, a node whose berth is gone stays the holder until an operator
//   declares it down (here: the node is powered off first).
// - Partition: A cut off from etcd by a TCP proxy fences itself before its lease can expire
//   (writes fail with EIO, `berth status` says so); B is refused until the lease TTL has run
//   from A's last renewal and mounts after; A, back, lets the moved volume go.
// - Mixed callers: preempt on a clean holder; Docker on A against CSI on B (refused while the
//   container holds it, staged and published after); dvdcli on C after that.
// - Invariant: during every test, test/helpers/invariant.ts samples the nodes' mount tables
//   every 20 ms and fails the test if one image is mounted read-write on two nodes at once.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { execFile } from '../helpers/callers.js';
import { startCluster, type TestCluster, type TestNode } from '../helpers/cluster.js';
import { createCsiClient, grpcError, mountCap, type CsiClient } from '../helpers/csi-client.js';
import { REPO_ROOT } from '../helpers/daemon.js';
import { acquireDriver } from '../helpers/docker-drivers.js';
import { cleanupDocker, docker, TEST_IMAGE, uniqueName } from '../helpers/docker.js';
import { imageId, watchMounts, type MountWatch } from '../helpers/invariant.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';
import { expectedRecords, startRecordWriter } from '../helpers/writer.js';

const roots = useTmpRoots();
const NODES = ['fa', 'fb', 'fc'] as const;
const LEASE_TTL_MS = 4_000;
const SELF_FENCE_MS = 2_000;

/** Polls `check` every `everyMs` until it holds; fails naming `what` after `ms`. */
async function poll<T>(what: string, check: () => Promise<T | false | null | undefined> | T | false | null | undefined, ms = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** The cluster and the invariant checker over all its nodes (stopped by the root's cleanup, after a last check). */
async function failoverCluster(root: TmpRoot, o: Partial<Parameters<typeof startCluster>[1]> = {}): Promise<{ c: TestCluster; inv: MountWatch; n: (id: string) => TestNode; imageOf: (vol: { id: string }) => string; loopsLeft: () => string[] }> {
  const c = await startCluster(root, { nodes: NODES, namespaces: true, leaseTtlMs: LEASE_TTL_MS, selfFenceMs: SELF_FENCE_MS, ...o });
  const inv = watchMounts(Object.fromEntries(c.nodes.map((x) => [x.id, x.mountTablePid])), { under: root.dir });
  // Every image the test made (by inode), for the cleanup below even once the file is gone.
  const made = new Set<string>();
  const imageOf = (vol: { id: string }) => {
    const path = join(c.shared, 'loop', `${vol.id}.img`);
    made.add(imageId(path));
    return path;
  };
  // Runs before the cluster's own cleanup: the kernel shows a loop device attached in a node's
  // namespace with a backing path that is not under the test's root, so the root's sweep
  // would miss it. Every node goes down (daemon, agent, namespace), then every loop device
  // whose backing file is one of the suite's images (by inode) is detached.
  root.defer(async () => {
    inv.stop();
    const images = new Set([...inv.images(), ...made]);
    for (const f of readdirSync(join(c.shared, 'loop'))) images.add(imageId(join(c.shared, 'loop', f)));
    const gone: number[] = [];
    for (const x of c.nodes) {
      await x.kill('SIGKILL');
      const agent = x.agentPid();
      x.killAgent();
      for (const pid of [agent, x.nsPid]) {
        if (!pid) continue;
        gone.push(pid);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    // A namespace (and the mounts only it has) goes with its last process: wait for that.
    await poll('the nodes\' namespaces to go', () => gone.every((pid) => {
      try {
        readlinkSync(`/proc/${pid}/ns/mnt`);
        return false;
      } catch {
        return true;
      }
    }), 30_000, 20);
    const ours = () => execFileSync('losetup', ['-l', '-n', '-O', 'NAME,BACK-MAJ:MIN,BACK-INO'], { encoding: 'utf8' })
      .split('\n').map((line) => line.trim().split(/\s+/)).filter(([dev, mm, ino]) => dev && images.has(`${mm}:${ino}`)).map(([dev]) => dev!);
    await poll('the suite\'s loop devices to be detached', () => {
      const left = ours();
      // Still open (a lazy unmount settling): the kernel detaches it at the last close.
      for (const dev of left) execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
      return left.length === 0;
    }, 30_000, 100);
  });
  // Loop devices still backed by one of the test's images (what berth left attached).
  const loopsLeft = () => execFileSync('losetup', ['-l', '-n', '-O', 'NAME,BACK-MAJ:MIN,BACK-INO'], { encoding: 'utf8' })
    .split('\n').map((line) => line.trim().split(/\s+/)).filter(([dev, mm, ino]) => dev && made.has(`${mm}:${ino}`)).map(([dev]) => dev!);
  return { c, inv, n: (id) => c.node(id), imageOf, loopsLeft };
}

/** Waits until every node's daemon and, when it runs one, its fence agent hold a lease. */
async function allAlive(c: TestCluster, agents: boolean): Promise<void> {
  await poll('every node (and its fence agent) alive', async () => {
    const nodes = await c.nodes[0]!.client.nodes();
    return nodes.length === c.nodes.length && nodes.every((x) => x.alive && (!agents || x.agentAlive));
  });
}

/** The records a file holds: the first `synced` exactly, then only whole records that continue the sequence. */
function checkRecords(content: string, synced: number): void {
  const want = expectedRecords(synced);
  expect(content.slice(0, want.length)).toBe(want);
  const rest = content.slice(want.length).split('\n');
  rest.pop(); // after the last newline: empty, or a record the writer never heard was synced
  rest.forEach((line, i) => expect(line).toBe(`record ${String(synced + i + 1).padStart(8, '0')}`));
}

function fsck(fs: 'ext4' | 'xfs', image: string): void {
  // Both exit 0 only for a clean filesystem; -n: never change it.
  if (fs === 'ext4') execFileSync('e2fsck', ['-fn', image], { stdio: 'pipe' });
  else execFileSync('xfs_repair', ['-n', '-f', image], { stdio: 'pipe' });
}

describe('failover: exclusive attach, fencing and takeover (3 daemons, one etcd, shared loop storage)', () => {
  it.each([
    ['ext4', '64MiB'],
    ['xfs', '320MiB'],
  ] as const)('daemon killed under a live writer (%s): B is refused naming A until A is fenced by its agent; then A cannot write, B has every synced record, fsck is clean', async (fs, size) => {
    const root = roots.create(`failover-kill-${fs}`);
    const { c, inv, n, imageOf, loopsLeft } = await failoverCluster(root);
    const [a, b] = [n('fa'), n('fb')];
    await allAlive(c, true);
    const vol = await a.client.createVolume({ name: 'pg', backend: 'sloop', size, fs });
    const image = imageOf(vol);
    const m = await a.client.mount('pg', { consumer: 'ctr-a' });
    const w = startRecordWriter(root, { nsPid: a.nsPid, file: join(m.path, 'records') });
    await w.until((s) => s.synced >= 20, 'the writer on fa to sync 20 records');
    await poll('the checker to see the mount on fa', () => inv.writers(image).join() === 'fa');

    await a.kill('SIGKILL');
    await expect(b.client.mount('pg', { consumer: 'ctr-b' })).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/node "fa"/) });
    // The daemon's lease expires; its fence agent's does not: the node still counts as able to write.
    let faSeen: unknown = null;
    await poll('fa\'s daemon lease to expire (seen from fb)', async () => {
      const fa = (await b.client.nodes()).find((x) => x.id === 'fa');
      faSeen = fa;
      return fa && !fa.alive && fa.agentAlive;
    }, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${JSON.stringify(faSeen)}\n${a.logs().split("\n").filter((l) => /agent/.test(l)).slice(-15).join("\n")}`);
    });
    const before = w.state().synced;
    await expect(b.client.mount('pg', { consumer: 'ctr-b' })).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/"fa".*fence agent is alive/) });
    await w.until((s) => s.synced >= before + 10, 'the writer on fa to go on writing without its daemon');

    // The operator fences fa from fb: fa's fence agent shuts the filesystem down and confirms.
    const fenced = await b.berth(['node', 'fence', 'fa']);
    expect(fenced.code, fenced.stderr).toBe(0);
    expect(fenced.stdout).toMatch(/confirmed by its agent; 1 filesystem\(s\) shut down/);
    inv.dead('fa', image); // rule: the fence is done, so the shutdown ioctl returned on fa
    const failed = await w.until((s) => s.failures >= 1, 'the writer on fa to fail');
    const synced = failed.synced;
    const hash = sha(image);
    const after = await w.until((s) => s.failures >= failed.failures + 20, '20 more failed writes on fa');
    expect(after.codes.every((code) => code === 'EIO'), after.codes.join(',')).toBe(true);
    expect(after.syncedAfterFailure).toBe(0);
    expect(sha(image)).toBe(hash); // nothing of fa's reaches the image any more
    await w.stop();

    const mb = await b.client.mount('pg', { consumer: 'ctr-b' });
    checkRecords(b.run(['cat', join(mb.path, 'records')]), synced);
    expect((await c.node('fc').client.inspectVolume('pg')).attachments.map((x) => x.node)).toEqual(['fb']);
    await poll('the checker to see fb\'s mount beside fa\'s shut-down one', () => inv.writers(image).join() === 'fa,fb');
    await b.client.unmount('pg', { consumer: 'ctr-b' });

    // fa's daemon comes back: the volume moved away while it was gone; it lets its copy go.
    await a.start();
    await poll('fa to let its shut-down copy go', () => inv.writers(image).length === 0);
    const st = await a.client.status();
    expect(st.cluster.mode === 'etcd' && st.cluster.events.filter((e) => e.volume === 'pg').map((e) => e.why)).toEqual(['moved-away']);
    fsck(fs, image);
    expect(await b.berth(['node', 'unfence', 'fa'])).toMatchObject({ code: 0 });
    await a.client.removeVolume('pg');
    await poll('no loop device left on the test\'s images', () => loopsLeft().length === 0, 10_000).catch(() => expect(loopsLeft()).toEqual([]));
    inv.assertClean();
    expect(inv.samples).toBeGreaterThan(50);
  });

  it('without a fence agent, a node whose berth is gone holds its volumes until declared down; then B takes over with every synced record', async () => {
    const root = roots.create('failover-noagent');
    const { c, inv, n, imageOf, loopsLeft } = await failoverCluster(root, { fenceAgent: false });
    const [a, b] = [n('fa'), n('fb')];
    await allAlive(c, false);
    const vol = await a.client.createVolume({ name: 'db', backend: 'sloop', size: '64MiB', fs: 'ext4' });
    const image = imageOf(vol);
    const m = await a.client.mount('db', { consumer: 'ctr-a' });
    const w = startRecordWriter(root, { nsPid: a.nsPid, file: join(m.path, 'records') });
    await w.until((s) => s.synced >= 20, 'the writer on fa to sync 20 records');

    await a.kill('SIGKILL');
    await poll('fa\'s lease to expire (seen from fb)', async () => (await b.client.nodes()).find((x) => x.id === 'fa')?.alive === false, 30_000);
    // Nothing of berth answers on fa, but nobody made its copy unwritable: still refused.
    const before = w.state().synced;
    await expect(b.client.mount('db', { consumer: 'ctr-b' })).rejects.toMatchObject({
      kind: 'FailedPrecondition', message: expect.stringMatching(/node "fa" does not answer and runs no fence agent.*berth node fence fa/),
    });
    await w.until((s) => s.synced >= before + 5, 'the writer on fa to go on writing');

    // The node is powered off (its processes and its mount namespace go), then declared down.
    await w.stop();
    const synced = w.state().synced;
    process.kill(a.nsPid!, 'SIGKILL');
    await poll('fa\'s mounts to go with its namespace', () => inv.writers(image).length === 0);
    // Its loop device went with its kernel, too (here, one kernel: detached by hand).
    for (const dev of loopsLeft()) execFileSync('losetup', ['-d', dev]);
    const declared = await b.berth(['node', 'fence', 'fa']);
    expect(declared.code, declared.stderr).toBe(0);
    expect(declared.stdout).toMatch(/declared down/);
    const mb = await b.client.mount('db', { consumer: 'ctr-b' });
    checkRecords(b.run(['cat', join(mb.path, 'records')]), synced);
    await b.client.unmount('db', { consumer: 'ctr-b' });
    fsck('ext4', image);
    await b.client.removeVolume('db');
    await poll('no loop device left on the test\'s images', () => loopsLeft().length === 0, 10_000).catch(() => expect(loopsLeft()).toEqual([]));
    inv.assertClean();
  });

  it('partition: A cut off from etcd fences itself before its lease can expire and says so; B is refused until the TTL ran out, then takes over', async () => {
    const root = roots.create('failover-partition');
    let proxy: TcpProxy | null = null;
    const { c, inv, n, imageOf, loopsLeft } = await failoverCluster(root, {
      endpoint: async (id, etcd) => {
        if (id !== 'fa') return etcd.endpoint;
        proxy = await startTcpProxy(root, etcd.port);
        return proxy.endpoint;
      },
    });
    const cut = proxy as unknown as TcpProxy;
    const [a, b] = [n('fa'), n('fb')];
    await allAlive(c, true);
    const vol = await a.client.createVolume({ name: 'q', backend: 'sloop', size: '64MiB', fs: 'ext4' });
    const image = imageOf(vol);
    const m = await a.client.mount('q', { consumer: 'ctr-a' });
    const w = startRecordWriter(root, { nsPid: a.nsPid, file: join(m.path, 'records') });
    await w.until((s) => s.synced >= 20, 'the writer on fa to sync 20 records');

    // The last renewal fa sent before the cut: no lease of fa's can expire before it + TTL.
    const st0 = await a.client.status();
    const renewedAt = Date.now() - (st0.cluster.mode === 'etcd' ? st0.cluster.sinceRenewalMs ?? 0 : 0);
    cut.cut();
    const cutAt = Date.now();
    const earliestExpiry = renewedAt + LEASE_TTL_MS;

    // fb keeps asking from the cut on; every answer before the earliest expiry must be a refusal.
    const attempts: Array<{ start: number; end: number; ok: boolean; why: string }> = [];
    const taking = (async () => {
      for (;;) {
        const start = Date.now();
        const r = await b.client.mount('q', { consumer: 'ctr-b' }).then(
          (x) => ({ ok: true, why: x.path }),
          (e: { kind?: string; message?: string }) => ({ ok: false, why: `${e.kind}: ${e.message}` }),
        );
        attempts.push({ start, end: Date.now(), ...r });
        if (r.ok) return r.why;
        if (Date.now() - cutAt > 60_000) throw new Error(`fb never took over: ${JSON.stringify(attempts.slice(-3))}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    })();

    // fa fences itself: its writer fails with EIO before any lease of fa's can expire.
    const failed = await w.until((s) => s.failures >= 1, 'the writer on fa to fail', LEASE_TTL_MS * 3);
    const failedAt = Date.now();
    expect(failedAt, `self-fenced ${failedAt - cutAt} ms after the cut`).toBeLessThan(earliestExpiry);
    const selfFenced = await poll('fa to say it fenced itself', async () => {
      const st = await a.client.status();
      return st.cluster.mode === 'etcd' && st.cluster.selfFenced && st.cluster.events.some((e) => e.volume === 'q' && e.why === 'self-fence') && st;
    }, 10_000, 20);
    expect(selfFenced.cluster.mode).toBe('etcd');
    inv.dead('fa', image); // rule: fa reports the shutdown ioctl done for the volume
    const cli = await a.berth(['status']);
    expect(cli.stdout).toMatch(/Fencing\s+SELF-FENCED/);
    await expect(a.client.mount('q', { consumer: 'another' })).rejects.toMatchObject({ kind: 'Unavailable' });
    const later = await w.until((s) => s.failures >= failed.failures + 10, '10 more failed writes on fa');
    expect(later.codes.every((code) => code === 'EIO'), later.codes.join(',')).toBe(true);
    expect(later.syncedAfterFailure).toBe(0);
    const synced = later.synced;

    const path = await taking;
    const won = attempts.at(-1)!;
    expect(won.end, `fb took over ${won.end - cutAt} ms after the cut (TTL ${LEASE_TTL_MS} ms)`).toBeGreaterThanOrEqual(earliestExpiry);
    const refusedInTime = attempts.filter((x) => !x.ok && x.end < earliestExpiry);
    expect(refusedInTime.length).toBeGreaterThan(0);
    for (const x of refusedInTime) expect(x.why).toMatch(/FailedPrecondition: .*node "fa"/);
    expect((await c.node('fc').client.nodes()).find((x) => x.id === 'fa')).toMatchObject({ alive: false });
    await w.stop();
    checkRecords(b.run(['cat', join(path, 'records')]), synced);

    // fa back: it finds the volume moved away and lets its shut-down copy go, and serves again.
    cut.heal();
    await poll('fa to serve again and let its copy go', async () => {
      const st = await a.client.status();
      return st.cluster.mode === 'etcd' && !st.cluster.selfFenced && inv.writers(image).join() === 'fb';
    }, 60_000, 100);
    await b.client.unmount('q', { consumer: 'ctr-b' });
    fsck('ext4', image);
    await a.client.removeVolume('q');
    await poll('no loop device left on the test\'s images', () => loopsLeft().length === 0, 10_000).catch(() => expect(loopsLeft()).toEqual([]));
    inv.assertClean();
  });

  it('preempt on a clean holder: B mounts with preempt, A shuts its copy down and releases it first, B has A\'s data', async () => {
    const root = roots.create('failover-preempt');
    const { c, inv, n, imageOf, loopsLeft } = await failoverCluster(root);
    const [a, b] = [n('fa'), n('fb')];
    await allAlive(c, true);
    const vol = await a.client.createVolume({ name: 'web', backend: 'sloop', size: '64MiB', fs: 'ext4' });
    const image = imageOf(vol);
    const m = await a.client.mount('web', { consumer: 'ctr-a' });
    a.run(['sh', '-c', `echo from-fa > ${join(m.path, 'f')} && sync`]);
    await expect(b.client.mount('web', { consumer: 'ctr-b' })).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/node "fa"/) });

    const mb = await b.client.mount('web', { consumer: 'ctr-b', preempt: true });
    expect(b.run(['cat', join(mb.path, 'f')])).toBe('from-fa\n');
    await poll('the checker to see the mount on fb', () => inv.writers(image).join() === 'fb'); // fa unmounted before fb mounted: no overlap seen
    const seen = await c.node('fc').client.inspectVolume('web');
    expect(seen.attachments.map((x) => x.node)).toEqual(['fb']);
    expect((await a.client.inspectVolume('web')).mounts ?? []).toEqual([]);
    const st = await a.client.status();
    expect(st.cluster.mode === 'etcd' && st.cluster.events.some((e) => e.volume === 'web' && e.why === 'preempted')).toBe(true);
    await b.client.unmount('web', { consumer: 'ctr-b' });
    fsck('ext4', image);
    await a.client.removeVolume('web');
    await poll('no loop device left on the test\'s images', () => loopsLeft().length === 0, 10_000).catch(() => expect(loopsLeft()).toEqual([]));
    inv.assertClean();
  });

  it('mixed callers: Docker on A holds it, a CSI publish on B is refused naming A and succeeds once the container is gone; then dvdcli mounts it on C', async () => {
    const root = roots.create('failover-mixed');
    const drivers = { fa: await acquireDriver('failover'), fc: await acquireDriver('failover') };
    root.defer(drivers.fa.release);
    root.defer(drivers.fc.release);
    const { c, inv, n, imageOf, loopsLeft } = await failoverCluster(root, {
      // fa serves dockerd, which mounts into containers from the host's namespace.
      namespaces: (id) => id !== 'fa',
      daemon: (id) => {
        if (id === 'fb') return { csi: true };
        const d = drivers[id as 'fa' | 'fc'];
        return { docker: true, config: { docker: { enabled: true, driverName: d.driver, socket: d.socket } } };
      },
    });
    const [a, b, cc] = [n('fa'), n('fb'), n('fc')];
    await allAlive(c, true);
    const containers: string[] = [];
    root.defer(() => cleanupDocker({
      driver: drivers.fa.driver,
      containers,
      release: (v) => a.client.removeVolume(v, { force: true }).catch((e: { kind?: string }) => {
        if (e.kind !== 'NotFound') throw e;
      }),
    }));
    const csi: CsiClient = createCsiClient(b.csiEndpoint);
    root.defer(() => csi.close());

    const name = uniqueName('failover-mixed');
    await docker(['volume', 'create', '-d', drivers.fa.driver, '-o', 'backend=sloop', '-o', 'size=64MiB', '-o', 'fs=ext4', name]);
    const vol = await b.client.inspectVolume(name);
    const image = imageOf(vol);
    const ctr = uniqueName('berth-failover');
    containers.push(ctr);
    await docker(['run', '-d', '--network', 'none', '--name', ctr, '-v', `${name}:/data`, TEST_IMAGE, 'sh', '-c', 'echo from-docker > /data/f && sync && sleep 600']);
    await poll('the container on fa to write', async () => (await docker(['exec', ctr, 'cat', '/data/f'])) === 'from-docker');
    await poll('the checker to see the mount on fa', () => inv.writers(image).join() === 'fa');

    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    const publish = () => csi.controller('ControllerPublishVolume', { volume_id: vol.id, node_id: 'fb', volume_capability: cap, readonly: false });
    const refused = await grpcError(publish());
    expect([refused.code, refused.details]).toEqual([grpcStatus.FAILED_PRECONDITION, expect.stringMatching(/"fa"/)]);

    await docker(['rm', '-f', ctr]);
    await poll('fa to release the volume', async () => (await b.client.inspectVolume(name)).attachments.length === 0);
    await publish();
    const stage = root.path('kubelet', 'fb', 'staging', 'v');
    const target = root.path('kubelet', 'fb', 'pods', 'p1', 'v');
    await csi.node('NodeStageVolume', { volume_id: vol.id, staging_target_path: stage, volume_capability: cap });
    await csi.node('NodePublishVolume', { volume_id: vol.id, staging_target_path: stage, target_path: target, volume_capability: cap, readonly: false });
    expect(b.run(['cat', join(target, 'f')])).toBe('from-docker\n');
    await poll('the checker to see the mount on fb', () => inv.writers(image).join() === 'fb');
    // While fb holds it, dvdcli on fc is refused in one line naming fb.
    const bin = root.path('bin');
    mkdirSync(bin, { recursive: true });
    symlinkSync(join(REPO_ROOT, 'dist', 'dvdcli.cjs'), join(bin, 'dvdcli'));
    const dvdcli = (cmd: string) => execFile(join(bin, 'dvdcli'), [cmd, `--volumedriver=${drivers.fc.driver}`, `--volumename=${name}`]);
    const held = await dvdcli('mount');
    expect([held.code, held.stdout]).toEqual([1, '']);
    expect(held.stderr).toMatch(/^time="[^"]+" level=error msg=".*\\"fb\\".*" \n$/);

    await csi.node('NodeUnpublishVolume', { volume_id: vol.id, target_path: target });
    await csi.node('NodeUnstageVolume', { volume_id: vol.id, staging_target_path: stage });
    await csi.controller('ControllerUnpublishVolume', { volume_id: vol.id, node_id: 'fb' });
    const mounted = await dvdcli('mount');
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(cc.run(['cat', join(mounted.stdout.trim(), 'f')])).toBe('from-docker\n');
    await poll('the checker to see the mount on fc', () => inv.writers(image).join() === 'fc');
    expect((await dvdcli('unmount')).code).toBe(0);
    await docker(['volume', 'rm', name]);
    await poll('no loop device left on the test\'s images', () => loopsLeft().length === 0, 10_000).catch(() => expect(loopsLeft()).toEqual([]));
    inv.assertClean();
  });
});
