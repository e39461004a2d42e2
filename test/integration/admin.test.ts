// The admin REST API of a real daemon over its unix socket: routes, idempotency, error
// bodies that name the bad field (and change nothing), metrics, socket mode, TCP + token.
import { statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../../core/errors.js';
import { createAdminClient } from '../../frontends/admin/client.js';
import { runBerth, startTestDaemon } from '../helpers/daemon.js';
import { raw } from '../helpers/http.js';
import { leftovers, useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

type ErrBody = { error: { kind: string; message: string; field?: string } };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('admin API', () => {
  it('serves status, version, backends and capacity; the socket is not world-accessible', async () => {
    const d = await startTestDaemon(roots.create('admin-basic'));
    const status = await d.client.status();
    expect(status).toMatchObject({ nodeId: 'test-node', ready: true, volumes: 0 });
    expect([...status.backends].sort()).toEqual(['local', 'loop']);
    expect((await d.client.version()).version).toBe(status.version);
    const backends = await d.client.backends();
    expect(backends.map((b) => `${b.name}:${b.driver}`).sort()).toEqual(['local:dir', 'loop:loop']);
    const caps = await d.client.capacity();
    expect(caps.map((c) => c.backend).sort()).toEqual(['local', 'loop']);
    expect(statSync(d.socket).mode & 0o777).toBe(0o660);
  });

  it('answers on the admin socket only once the Docker socket and the CSI endpoint are listening', async () => {
    // startTestDaemon returns as soon as the admin API says ready: install.sh and every
    // caller wait the same way, so the other frontends must already be there.
    const d = await startTestDaemon(roots.create('admin-order'), { docker: true, csi: true });
    expect(statSync(d.dockerSocket).isSocket()).toBe(true);
    expect(statSync(d.csiEndpoint).isSocket()).toBe(true);
  });

  it('creates, finds, filters, mounts with references and removes a dir volume', async () => {
    const d = await startTestDaemon(roots.create('admin-crud'));
    const sock = { socket: d.socket };
    const created = await raw(sock, 'POST', '/v1/volumes', { name: 'web', labels: { team: 'a' } });
    expect(created.status).toBe(201);
    const vol = created.json as { id: string; name: string; backend: string };
    expect(vol).toMatchObject({ name: 'web', backend: 'local' });
    expect(vol.id).toMatch(/^vol-[a-z0-9]{26}$/);

    // Idempotent create; same name with other parameters is a conflict.
    expect((await d.client.createVolume({ name: 'web', labels: { team: 'a' } })).id).toBe(vol.id);
    const conflict = await raw(sock, 'POST', '/v1/volumes', { name: 'web', labels: { team: 'b' } });
    expect(conflict.status).toBe(409);
    expect((conflict.json as ErrBody).error.kind).toBe('AlreadyExists');

    await d.client.createVolume({ name: 'db', labels: { team: 'b' } });
    expect((await d.client.inspectVolume(vol.id)).name).toBe('web');
    expect((await d.client.listVolumes({ labels: { team: 'b' } })).map((v) => v.name)).toEqual(['db']);
    expect((await d.client.listVolumes({ backend: 'local' })).length).toBe(2);

    const m1 = await d.client.mount('web', { consumer: 'c1' });
    expect(m1.existing).toBe(false);
    expect(statSync(m1.path).isDirectory()).toBe(true);
    expect((await d.client.mount('web', { consumer: 'c1' })).existing).toBe(true);
    await d.client.mount('web', { consumer: 'c2' });
    expect(await d.client.path('web')).toBe(m1.path);

    const inUse = await raw(sock, 'DELETE', '/v1/volumes/web');
    expect(inUse.status).toBe(409);
    expect((inUse.json as ErrBody).error.kind).toBe('InUse');

    expect((await d.client.unmount('web', { consumer: 'c1' })).mounts.map((m) => m.consumer)).toEqual(['c2']);
    expect((await d.client.unmount('web', { consumer: 'c2' })).mounts).toEqual([]);
    const del = await raw(sock, 'DELETE', '/v1/volumes/web');
    expect(del.status).toBe(204);
    const gone = await raw(sock, 'GET', '/v1/volumes/web');
    expect(gone.status).toBe(404);
    expect((gone.json as ErrBody).error.kind).toBe('NotFound');
    await expect(d.client.inspectVolume('web')).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('refuses bad input with an error body naming the field, and changes nothing', async () => {
    const d = await startTestDaemon(roots.create('admin-bad'));
    const sock = { socket: d.socket };
    await d.client.createVolume({ name: 'keep' });
    const before = JSON.stringify(await d.client.listVolumes());

    const cases: Array<{ body: string | object; status: number; kind: string; field: string }> = [
      { body: { name: 'a', size: '12XB' }, status: 400, kind: 'InvalidArgument', field: 'size' },
      { body: { name: 'a', size: '-5' }, status: 400, kind: 'InvalidArgument', field: 'size' },
      { body: { name: '../etc' }, status: 400, kind: 'InvalidArgument', field: 'name' },
      { body: { name: 'a/b' }, status: 400, kind: 'InvalidArgument', field: 'name' },
      { body: { name: 'x'.repeat(129) }, status: 400, kind: 'InvalidArgument', field: 'name' },
      { body: { name: '' }, status: 400, kind: 'InvalidArgument', field: 'name' },
      { body: { size: '1G' }, status: 400, kind: 'InvalidArgument', field: 'name' },
      { body: { name: 'a', fs: 'ntfs', backend: 'loop' }, status: 400, kind: 'InvalidArgument', field: 'fs' },
      { body: { name: 'a', mode: 'tape' }, status: 400, kind: 'InvalidArgument', field: 'mode' },
      { body: { name: 'a', accessMode: 'Sometimes' }, status: 400, kind: 'InvalidArgument', field: 'accessMode' },
      { body: { name: 'a', colour: 'red' }, status: 400, kind: 'InvalidArgument', field: 'colour' },
      { body: { name: 'a', labels: { k: 1 } }, status: 400, kind: 'InvalidArgument', field: 'labels.k' },
      { body: { name: 'a', labels: 'x' }, status: 400, kind: 'InvalidArgument', field: 'labels' },
      { body: '{"name": ', status: 400, kind: 'InvalidArgument', field: 'body' },
      { body: '[1]', status: 400, kind: 'InvalidArgument', field: 'body' },
    ];
    for (const c of cases) {
      const r = await raw(sock, 'POST', '/v1/volumes', c.body);
      expect({ body: c.body, status: r.status, kind: (r.json as ErrBody).error.kind, field: (r.json as ErrBody).error.field }).toEqual({
        body: c.body, status: c.status, kind: c.kind, field: c.field,
      });
      expect((r.json as ErrBody).error.message.length).toBeGreaterThan(5);
    }

    // Backend-level refusals also name the field.
    const unknownBackend = await raw(sock, 'POST', '/v1/volumes', { name: 'a', backend: 'nope' });
    expect(unknownBackend.status).toBe(400);
    expect((unknownBackend.json as ErrBody).error.field).toBe('backend');
    const badOpt = await raw(sock, 'POST', '/v1/volumes', { name: 'a', backend: 'loop', size: '64MiB', options: { bogus: '1' } });
    expect((badOpt.json as ErrBody).error.field).toBe('opts.bogus');
    const xfsSmall = await raw(sock, 'POST', '/v1/volumes', { name: 'a', backend: 'loop', size: '64MiB', fs: 'xfs' });
    expect([400, 416]).toContain(xfsSmall.status);
    expect((xfsSmall.json as ErrBody).error.field).toBe('size');

    // Other routes.
    const noConsumer = await raw(sock, 'POST', '/v1/volumes/keep/mount', {});
    expect([noConsumer.status, (noConsumer.json as ErrBody).error.field]).toEqual([400, 'consumer']);
    const badExpand = await raw(sock, 'POST', '/v1/volumes/keep/expand', { size: 'big' });
    expect([badExpand.status, (badExpand.json as ErrBody).error.field]).toEqual([400, 'size']);
    const badForce = await raw(sock, 'DELETE', '/v1/volumes/keep?force=maybe');
    expect([badForce.status, (badForce.json as ErrBody).error.field]).toEqual([400, 'force']);
    const badFrontend = await raw(sock, 'GET', '/v1/volumes', undefined, { 'x-berth-frontend': 'hacker' });
    expect([badFrontend.status, (badFrontend.json as ErrBody).error.field]).toEqual([400, 'X-Berth-Frontend']);
    const noRoute = await raw(sock, 'GET', '/v2/everything');
    expect([noRoute.status, (noRoute.json as ErrBody).error.kind]).toEqual([404, 'NotFound']);
    const missing = await raw(sock, 'POST', '/v1/volumes/ghost/mount', { consumer: 'c' });
    expect([missing.status, (missing.json as ErrBody).error.kind]).toEqual([404, 'NotFound']);

    expect(JSON.stringify(await d.client.listVolumes())).toBe(before);
    expect(leftovers(d.root.dir)).toEqual({ mounts: [], loops: [] });
  });

  it('rebuilds the same BerthError in the client', async () => {
    const d = await startTestDaemon(roots.create('admin-client'));
    const err = await d.client.createVolume({ name: 'a', size: 'lots' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ kind: 'InvalidArgument', field: 'size' });
    const down = createAdminClient({ socket: d.root.path('nothing.sock') });
    await expect(down.status()).rejects.toMatchObject({ kind: 'FailedPrecondition', message: expect.stringMatching(/cannot reach/) });
  });

  it('exports Prometheus metrics by frontend, op and outcome', async () => {
    const d = await startTestDaemon(roots.create('admin-metrics'));
    await d.client.createVolume({ name: 'm1' });
    await d.client.createVolume({ name: 'bad/name' }).catch(() => undefined);
    await raw({ socket: d.socket }, 'GET', '/v1/volumes/m1', undefined, { 'x-berth-frontend': 'flexvolume' });
    const text = await d.client.metrics();
    expect(text).toMatch(/berth_operations_total\{[^}]*frontend="admin"[^}]*op="create"[^}]*outcome="ok"[^}]*\} 1/);
    expect(text).toMatch(/berth_operations_total\{[^}]*frontend="flexvolume"[^}]*op="inspect"[^}]*\} 1/);
    expect(text).toMatch(/berth_operation_duration_seconds_bucket\{/);
    expect(text).toMatch(/^berth_volumes 1$/m);
  });

  it('serves TCP only with a bearer token', async () => {
    const root = roots.create('admin-tcp');
    const port = await freePort();
    const d = await startTestDaemon(root, { config: { admin: { socket: root.path('run', 'admin.sock'), tcp: `127.0.0.1:${port}`, token: 's3cret' } } });
    const tcp = { host: '127.0.0.1', port };
    expect((await raw(tcp, 'GET', '/v1/status')).status).toBe(401);
    expect((await raw(tcp, 'GET', '/v1/status', undefined, { authorization: 'Bearer wrong!' })).status).toBe(401);
    const ok = await raw(tcp, 'GET', '/v1/status', undefined, { authorization: 'Bearer s3cret' });
    expect(ok.status).toBe(200);
    const viaClient = createAdminClient({ url: `http://127.0.0.1:${port}`, token: 's3cret' });
    expect((await viaClient.status()).ready).toBe(true);
    // The unix socket needs no token.
    expect((await raw({ socket: d.socket }, 'GET', '/v1/status')).status).toBe(200);
  });

  it('refuses to start a TCP listener without a token, with a clear message and exit 1', async () => {
    const root = roots.create('admin-notoken');
    const r = await runBerth(['serve', '--state-root', root.path('state'), '--socket', root.path('a.sock'), '--no-docker', '--no-csi', '--admin-tcp', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin\.token/);
  });

  it('refuses to start on an unknown config key, naming it', async () => {
    const root = roots.create('admin-badcfg');
    writeFileSync(root.path('c.yaml'), `stateRoot: ${root.path('state')}\nadmin:\n  sockett: /x\n`);
    const r = await runBerth(['serve', '--config', root.path('c.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin\.sockett.*did you mean "admin\.socket"/);
  });

  it('refuses to start on an unknown backend driver or a socket another daemon serves; the first keeps working', async () => {
    const root = roots.create('admin-startfail');
    writeFileSync(root.path('bad.yaml'), `stateRoot: ${root.path('s2')}\nbackends: { local: { driver: dri } }\nadmin: { socket: ${root.path('b.sock')} }\ndocker: { enabled: false }\ncsi: { enabled: false }\n`);
    const badDriver = await runBerth(['serve', '--config', root.path('bad.yaml')]);
    expect(badDriver.code).toBe(1);
    expect(badDriver.stderr).toMatch(/cannot start: InvalidArgument: .*dri/);

    const d = await startTestDaemon(root);
    await d.client.createVolume({ name: 'precious' });
    // Same config: the state root is taken (checked before the store is opened or reconciled).
    const same = await runBerth(['serve', '--config', d.configFile]);
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/another berth daemon \(pid \d+\) is using the state root/);
    // Another state root but the same admin socket: the live socket is not stolen.
    const second = await runBerth(['serve', '--config', d.configFile, '--state-root', root.path('other-state')]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/admin\.socket: .*admin\.sock is in use by another process/);
    expect((await d.client.inspectVolume('precious')).status).toBe('ready');
    expect((await d.client.status()).ready).toBe(true);
  });
});
