// kill -9 of the real daemon in the middle of loop-volume operations, at several kill points
// (right after the request is written; and between a backend step and what the core records
// after it: the image file made, the loop device attached, the mount made, the mount gone),
// then restart and check: every record is settled (no creating/deleting left), the kernel
// matches the records (mounted iff referenced, a loop device iff attached), no
// image/device/mount without a volume, references of other consumers intact; then the
// interrupted call is retried (idempotent) and everything is removed with nothing left behind.
//
// The kill points are exact, not timed: the daemon runs with BERTH_TEST_HOLDS
// (core/test-holds.ts) and waits at the point until it is killed (test/helpers/holds.ts). A
// test fails when its operation finished without reaching its point, and checks at the point
// that the kernel or disk is in the state the point names.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Volume } from '../../core/types.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createHoldServer, reached, type HoldPoint, type HoldServer } from '../helpers/holds.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const LOOP = 'loop';

const imagesDir = (d: TestDaemon) => join(d.stateRoot, 'backends', LOOP);
const images = (d: TestDaemon) => (existsSync(imagesDir(d)) ? readdirSync(imagesDir(d)).filter((f) => f.endsWith('.img')) : []);
const managedMount = (d: TestDaemon, id: string) => join(d.stateRoot, 'mounts', id);
const isMounted = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);

function loopBacking(): string[] {
  const out = execFileSync('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  if (!out.trim()) return [];
  return (JSON.parse(out) as { loopdevices: Array<{ 'back-file': string | null }> }).loopdevices.map((l) => (l['back-file'] ?? '').replace(/ \(deleted\)$/, ''));
}

/** Sends a request and resolves once it is fully written to the socket (the response is ignored). */
function sendOnly(d: TestDaemon, method: string, path: string, body?: object): { written: Promise<void>; done: Promise<void> } {
  const payload = body ? JSON.stringify(body) : undefined;
  let onWritten!: () => void;
  const written = new Promise<void>((r) => (onWritten = r));
  const done = new Promise<void>((resolve) => {
    const req = request({ socketPath: d.socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('finish', onWritten);
    req.on('error', () => resolve()); // the daemon died under it: expected
    req.end(payload);
  });
  return { written, done };
}

/** A daemon that reports its backend steps to a hold server (see the top of this file). */
async function crashDaemon(label: string): Promise<{ d: TestDaemon; holds: HoldServer }> {
  const root = roots.create(label);
  const holds = await createHoldServer(root);
  return { d: await startTestDaemon(root, { env: holds.env }), holds };
}

/**
 * Sends the request, waits until the daemon is held at `point` of it (failing when the
 * operation finished without reaching it), runs `check` there, and kills the daemon with
 * SIGKILL. Returns the point it was killed at.
 */
async function killAt(
  d: TestDaemon, holds: HoldServer, point: Partial<HoldPoint>, send: () => ReturnType<typeof sendOnly>, check: () => void,
): Promise<HoldPoint> {
  const at = holds.holdAt(point);
  const op = send();
  const hit = await reached(at, op.done, holds);
  check();
  await d.kill('SIGKILL');
  await op.done;
  return hit;
}

/** The invariants that must hold after any restart. */
async function expectConsistent(d: TestDaemon): Promise<Volume[]> {
  const vols = await d.client.listVolumes();
  const ids = new Set(vols.map((v) => v.id));
  for (const v of vols) {
    expect(v.status, `${v.name} settled`).toBe('ready');
    if (v.backend !== LOOP) continue;
    const img = join(imagesDir(d), `${v.id}.img`);
    expect(existsSync(img), `${v.name} image present`).toBe(true);
    expect(isMounted(managedMount(d, v.id)), `${v.name} mounted iff referenced`).toBe(v.mounts.length > 0);
    expect(loopBacking().includes(img), `${v.name} loop device iff attached`).toBe(v.attachments.length > 0);
    if (v.mounts.length > 0) expect(v.path).not.toBeNull();
  }
  // Nothing leaked: every image, loop device and mount under the root belongs to a volume.
  for (const f of images(d)) expect(ids.has(f.replace(/\.img$/, '')), `image ${f} has a volume`).toBe(true);
  const left = leftovers(d.root.dir);
  for (const l of left.loops) expect(ids.has(l.backingFile.split('/').pop()!.replace(/\.img$/, '')), `loop ${l.device}`).toBe(true);
  for (const m of left.mounts) expect([...ids].some((id) => m.startsWith(managedMount(d, id))), `mount ${m}`).toBe(true);
  return vols;
}

async function removeAllAndCheck(d: TestDaemon): Promise<void> {
  for (const v of await d.client.listVolumes()) await d.client.removeVolume(v.id, { force: true });
  expect(await d.client.listVolumes()).toEqual([]);
  expect(images(d)).toEqual([]);
  expect(leftovers(d.root.dir)).toEqual({ mounts: [], loops: [] });
}

describe('crash recovery (kill -9)', () => {
  it('during create: right after the request is written, and when the image file exists but the record is not final', async () => {
    const { d, holds } = await crashDaemon('crash-create');

    const a = sendOnly(d, 'POST', '/v1/volumes', { name: 'c1', backend: LOOP, size: '64MiB' });
    await a.written;
    await d.kill('SIGKILL');
    await a.done;
    await d.start();
    await expectConsistent(d);

    const hit = await killAt(d, holds, { step: 'create', when: 'after', name: 'c2' },
      () => sendOnly(d, 'POST', '/v1/volumes', { name: 'c2', backend: LOOP, size: '64MiB' }),
      () => expect(images(d)).toHaveLength(1)); // c2's image; c1 never got one
    expect(hit).toMatchObject({ backend: LOOP, name: 'c2' });
    await d.start();
    await expectConsistent(d);

    // The interrupted creates are retried and converge on one volume each.
    const c1 = await d.client.createVolume({ name: 'c1', backend: LOOP, size: '64MiB' });
    const c2 = await d.client.createVolume({ name: 'c2', backend: LOOP, size: '64MiB' });
    expect((await d.client.createVolume({ name: 'c1', backend: LOOP, size: '64MiB' })).id).toBe(c1.id);
    expect(new Set(images(d))).toEqual(new Set([`${c1.id}.img`, `${c2.id}.img`]));
    await expectConsistent(d);
    await removeAllAndCheck(d);
  });

  it('during the first mount: right after the request, with the loop device attached, with the mount made', async () => {
    const { d, holds } = await crashDaemon('crash-mount');
    const image = (v: Volume) => join(imagesDir(d), `${v.id}.img`);
    const points: Array<{ name: string; at: Partial<HoldPoint> | null; check: (v: Volume) => void }> = [
      { name: 'request-written', at: null, check: () => undefined },
      {
        name: 'loop-device', at: { step: 'attach', when: 'after' },
        check: (v) => {
          expect(loopBacking()).toContain(image(v));
          expect(isMounted(managedMount(d, v.id))).toBe(false);
        },
      },
      { name: 'mounted', at: { step: 'mount', when: 'after' }, check: (v) => expect(isMounted(managedMount(d, v.id))).toBe(true) },
    ];
    for (const p of points) {
      const v = await d.client.createVolume({ name: `m-${p.name}`, backend: LOOP, size: '64MiB', fs: 'ext4' });
      const send = () => sendOnly(d, 'POST', `/v1/volumes/${v.id}/mount`, { consumer: 'docker:abc' });
      if (p.at) {
        expect(await killAt(d, holds, { ...p.at, id: v.id }, send, () => p.check(v))).toMatchObject({ id: v.id });
      } else {
        const op = send();
        await op.written;
        await d.kill('SIGKILL');
        await op.done;
      }
      await d.start();
      const after = (await expectConsistent(d)).find((x) => x.id === v.id)!;
      expect(after.mounts.map((m) => m.consumer)).toEqual(after.mounts.length ? ['docker:abc'] : []);

      // Retrying the mount converges; the volume works.
      const res = await d.client.mount(v.id, { consumer: 'docker:abc' });
      expect(res.path).toMatch(/\/data$/);
      expect(isMounted(managedMount(d, v.id))).toBe(true);
      await d.client.unmount(v.id, { consumer: 'docker:abc' });
      await expectConsistent(d);
    }
    await removeAllAndCheck(d);
  });

  it('keeps other consumers\' references when killed during an unmount, and during a forced remove', async () => {
    const { d, holds } = await crashDaemon('crash-refs');
    const v = await d.client.createVolume({ name: 'shared', backend: LOOP, size: '64MiB' });
    await d.client.mount(v.id, { consumer: 'c1' });
    await d.client.mount(v.id, { consumer: 'c2' });
    await d.client.mount(v.id, { consumer: 'c3' });

    const un = sendOnly(d, 'POST', `/v1/volumes/${v.id}/unmount`, { consumer: 'c2' });
    await un.written;
    await d.kill('SIGKILL');
    await un.done;
    await d.start();
    const after = (await expectConsistent(d)).find((x) => x.id === v.id)!;
    const consumers = after.mounts.map((m) => m.consumer).sort();
    expect(consumers.filter((c) => c !== 'c2')).toEqual(['c1', 'c3']);
    expect(isMounted(managedMount(d, v.id))).toBe(true);
    await d.client.unmount(v.id, { consumer: 'c2' });
    expect((await d.client.inspectVolume(v.id)).mounts.map((m) => m.consumer).sort()).toEqual(['c1', 'c3']);

    // Forced remove of a mounted volume, killed once its mount is gone (device, image and record still there).
    await killAt(d, holds, { step: 'unmount', when: 'after', id: v.id }, () => sendOnly(d, 'DELETE', `/v1/volumes/${v.id}?force=true`), () => {
      expect(isMounted(managedMount(d, v.id))).toBe(false);
      expect(loopBacking()).toContain(join(imagesDir(d), `${v.id}.img`));
    });
    await d.start();
    const vols = await expectConsistent(d);
    if (vols.some((x) => x.id === v.id)) await d.client.removeVolume(v.id, { force: true });
    await expect(d.client.inspectVolume(v.id)).rejects.toMatchObject({ kind: 'NotFound' });
    await removeAllAndCheck(d);
  });

  it('survives repeated kills across many volumes with mounts (dir and loop) and restores every reference', async () => {
    const { d } = await crashDaemon('crash-many');
    const expected = new Map<string, string[]>();
    for (let i = 0; i < 3; i++) {
      const l = await d.client.createVolume({ name: `l${i}`, backend: LOOP, size: '64MiB' });
      const r = await d.client.createVolume({ name: `r${i}`, backend: 'local' });
      for (const v of [l, r]) {
        const cs = [`docker:${i}`, `csi:/pods/${i}`];
        for (const c of cs) await d.client.mount(v.id, { consumer: c });
        expected.set(v.id, cs.sort());
      }
    }
    for (let round = 0; round < 2; round++) {
      await d.kill('SIGKILL');
      await d.start();
      const vols = await expectConsistent(d);
      expect(new Map(vols.map((v) => [v.id, v.mounts.map((m) => m.consumer).sort()]))).toEqual(expected);
    }
    await removeAllAndCheck(d);
  });
});
