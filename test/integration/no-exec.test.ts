/**
 * The hot path starts no process. strace follows the real daemon (every thread, and every
 * thread or child it starts, -f) while it runs a CSI lifecycle on dir (Create, Stage,
 * Publish, Unpublish, Unstage, Delete) and a mount and unmount of a loop volume whose
 * filesystem exists (attach, mount, unmount, detach): no execve. A control run traced the
 * same way sees the mkfs.ext4 of a first mount, so a strace that saw nothing cannot pass.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createCsiClient, mountCap } from '../helpers/csi-client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

/** Traces execve/execveat of the running daemon while `work` runs; returns those trace lines. */
async function execsDuring(d: TestDaemon, root: TmpRoot, label: string, work: () => Promise<void>): Promise<string[]> {
  const pid = d.pid();
  if (!pid) throw new Error('daemon not running');
  const out = root.path(`strace-${label}.txt`);
  const strace = spawn('strace', ['-f', '-e', 'trace=execve,execveat', '-o', out, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((res) => strace.once('exit', () => res()));
  root.defer(async () => {
    strace.kill('SIGINT');
    await exited;
  });
  // Ready once it reports "Process <pid> attached with <n> threads": -p with -f attaches every
  // thread the daemon has; threads and children started later are followed (-f).
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    strace.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/attached/.test(stderr)) resolve();
    });
    strace.once('exit', (code) => reject(new Error(`strace exited (${code}) before attaching: ${stderr}`)));
  });
  await work();
  strace.kill('SIGINT'); // detaches and exits
  await exited;
  return readFileSync(out, 'utf8').split('\n').filter((l) => /execve/.test(l));
}

describe('no process on the hot path', () => {
  it('a CSI dir lifecycle and a loop mount/unmount of an existing filesystem run no execve', async () => {
    const root = roots.create('no-exec');
    const d = await startTestDaemon(root, { csi: true });
    const c = createCsiClient(d.csiEndpoint);
    root.defer(() => c.close());
    const vol = await d.client.createVolume({ name: 'fs', backend: 'loop', size: '64MiB', fs: 'ext4' });

    // Control: the first mount makes the filesystem with mkfs.ext4, and the trace sees it.
    const control = await execsDuring(d, root, 'control', async () => {
      await d.client.mount(vol.id, { consumer: 'test:first' });
      await d.client.unmount(vol.id, { consumer: 'test:first' });
    });
    expect(control.some((l) => l.includes('mkfs.ext4'))).toBe(true);

    const cap = mountCap();
    const staging = root.path('kubelet', 'staging', 'pv');
    const target = root.path('kubelet', 'pods', 'p1', 'volume');
    const hot = await execsDuring(d, root, 'hot', async () => {
      const created = await c.controller('CreateVolume', { name: 'pv', capacity_range: { required_bytes: String(2 ** 20) }, volume_capabilities: [cap] });
      const id: string = created.volume.volume_id;
      await c.node('NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
      await c.node('NodePublishVolume', { volume_id: id, staging_target_path: staging, target_path: target, volume_capability: cap });
      await c.node('NodeUnpublishVolume', { volume_id: id, target_path: target });
      await c.node('NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      await c.controller('DeleteVolume', { volume_id: id });
      const m = await d.client.mount(vol.id, { consumer: 'test:again' });
      expect(m.existing).toBe(false);
      const after = await d.client.unmount(vol.id, { consumer: 'test:again' });
      expect(after.mounts).toEqual([]);
    });
    expect(hot).toEqual([]);
  });
});
