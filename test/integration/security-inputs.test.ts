// The same hostile inputs against every frontend of a real daemon (issue 9, items 5 and 6):
// oversized bodies, prototype keys, huge ids and sizes, malformed JSON. Admin API on its
// unix socket and its token-protected TCP listener, the Docker plugin API on its socket and
// its TCP listener, CSI, FlexVolume (exec'd as kubelet does), dvdcli (its plugin client,
// pointed at this daemon's socket) and the berth CLI, wherever a probe applies.
//
// Nothing here is seen by the shared dockerd: the Docker socket and the spec file of the TCP
// listener live in the test's own root, under a driver name no other suite uses.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../frontends/dvdcli/args.js';
import { connectPlugin } from '../../frontends/dvdcli/plugin-client.js';
import { dockerPluginCall, goJson, kubeletCall } from '../helpers/callers.js';
import { createCsiClient, grpcError, mountCap } from '../helpers/csi-client.js';
import { runBerth, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { raw, streamPost } from '../helpers/http.js';
import { useTmpRoots, type TmpRoot } from '../helpers/tmp-root.js';

const roots = useTmpRoots();
const TOKEN = 't0ken-security-inputs';
const MB = 1_000_000;

type Target = { socket: string } | { host: string; port: number };

interface Env {
  readonly root: TmpRoot;
  readonly d: TestDaemon;
  readonly driver: string;
  readonly admin: Target;
  readonly adminTcp: { host: string; port: number };
  readonly dockerTcp: { host: string; port: number };
  readonly flex: string;
}

/** A port free right now (admin.tcp takes no port 0), as test/integration/admin.test.ts picks one. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** One daemon with every frontend on: admin socket + TCP (token), Docker socket + TCP, CSI; FlexVolume installed. */
async function setup(label: string, logLevel: 'info' | 'debug' = 'info'): Promise<Env> {
  const root = roots.create(`sec-${label}`);
  const driver = `berth-sec-${randomBytes(4).toString('hex')}`;
  mkdirSync(root.path('plugins'), { recursive: true });
  const adminPort = await freePort();
  const d = await startTestDaemon(root, {
    docker: true,
    csi: true,
    logLevel,
    config: {
      admin: { socket: root.path('run', 'admin.sock'), tcp: `127.0.0.1:${adminPort}`, token: TOKEN },
      docker: { enabled: true, driverName: driver, socket: root.path('plugins', `${driver}.sock`), tcp: '127.0.0.1:0', specDir: root.path('specs') },
    },
  });
  const spec = readFileSync(root.path('specs', `${driver}.spec`), 'utf8').trim();
  const dockerPort = Number(new URL(spec.replace(/^tcp:/, 'http:')).port);
  const install = await runBerth(['--socket', d.socket, 'flexvolume', 'install', '--plugin-dir', root.path('exec')]);
  expect(install.code, install.stderr).toBe(0);
  return {
    root, d, driver,
    admin: { socket: d.socket },
    adminTcp: { host: '127.0.0.1', port: adminPort },
    dockerTcp: { host: '127.0.0.1', port: dockerPort },
    flex: join(root.path('exec'), 'berth~berth', 'berth'),
  };
}

const dockerSocket = (e: Env) => e.root.path('plugins', `${e.driver}.sock`);

/** A Docker plugin call over TCP, as over the socket (dockerPluginCall). */
function dockerTcpCall(e: Env, method: string, body: string): Promise<{ status: number; json: { Err?: string } }> {
  return raw(e.dockerTcp, 'POST', `/${method}`, body).then((r) => ({ status: r.status, json: r.json as { Err?: string } }));
}

/** dvdcli's plugin client, discovering this daemon's socket by driver name as dvdcli does. */
async function dvdcli(e: Env, argv: string[]): Promise<string> {
  const args = parseArgs(argv);
  const plugin = await connectPlugin({ name: e.driver, waitSeconds: 0, warn: () => undefined, dirs: { socketDirs: [e.root.path('plugins')], specDirs: [] } });
  // `dvdcli create`: exactly the call its runDvdcli makes.
  return plugin.call('VolumeDriver.Create', { Name: args.volumeName, Opts: args.volumeOpts }).then(() => 'ok', (err: Error) => err.message);
}

/** A FlexVolume call that must fail; its message. */
async function flexFailure(e: Env, args: string[]): Promise<string> {
  const r = await kubeletCall(e.flex, args);
  expect(r.reply.status, r.combined).toBe('Failure');
  return r.reply.message ?? '';
}

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Nothing was made by any refused probe: no volume, no image, no managed mount directory. */
async function expectNothingMade(e: Env): Promise<void> {
  expect(await e.d.client.listVolumes()).toEqual([]);
  const images = readdirSync(join(e.d.stateRoot, 'backends', 'loop')).filter((f) => f.endsWith('.img'));
  expect(images).toEqual([]);
}

/** The daemon wrote no line longer than this: user strings in log lines are clipped. */
function longestLogLine(e: Env): number {
  return Math.max(...e.d.logs().split('\n').map((l) => l.length));
}

describe('security probes against every frontend', () => {
  it('refuses a 300 MB body on every HTTP listener at once, its memory flat and the connection closed', async () => {
    const e = await setup('body');
    const pid = e.d.pid()!;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const probes: Array<{ name: string; target: Target; path: string; headers?: Record<string, string>; docker: boolean }> = [
      { name: 'admin socket', target: e.admin, path: '/v1/volumes', docker: false },
      { name: 'admin TCP', target: e.adminTcp, path: '/v1/volumes', headers: auth, docker: false },
      { name: 'docker socket', target: { socket: dockerSocket(e) }, path: '/VolumeDriver.Create', docker: true },
      { name: 'docker TCP', target: e.dockerTcp, path: '/VolumeDriver.Create', docker: true },
    ];
    for (const p of probes) {
      for (const contentLength of [false, true]) {
        const before = rssBytes(pid);
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20);
        const r = await streamPost(p.target, p.path, { totalBytes: 300 * MB, contentLength, headers: p.headers, timeoutMs: 30_000 }).finally(() => clearInterval(sampler));
        peak = Math.max(peak, rssBytes(pid));
        const what = `${p.name} (${contentLength ? 'Content-Length' : 'chunked'})`;
        expect({ what, status: r.status }).toEqual({ what, status: 413 });
        const body = JSON.parse(r.text) as { Err?: string; error?: { kind: string; field: string } };
        if (p.docker) expect(body.Err, what).toMatch(/^invalid argument: body: is larger than 1 MiB/);
        else expect(body.error, what).toMatchObject({ kind: 'InvalidArgument', field: 'body' });
        // The daemon closed the connection long before the body could have gone through.
        expect(r.sentBytes, what).toBeLessThan(300 * MB);
        expect(peak - before, `${what}: RSS grew from ${before} to ${peak}`).toBeLessThan(50 * MB);
      }
    }
    // An unauthenticated caller gets 401 with nothing of its body read.
    const anon = await streamPost(e.adminTcp, '/v1/volumes', { totalBytes: 300 * MB, contentLength: false, timeoutMs: 30_000 });
    expect([anon.status, anon.sentBytes < 300 * MB]).toEqual([401, true]);
    // Every listener still serves.
    expect((await raw(e.admin, 'GET', '/v1/status')).status).toBe(200);
    expect((await raw(e.adminTcp, 'GET', '/v1/status', undefined, auth)).status).toBe(200);
    expect(await dockerPluginCall(dockerSocket(e), 'VolumeDriver.List', {})).toEqual({ Volumes: [], Err: '' });
    expect((await dockerTcpCall(e, 'VolumeDriver.List', '{}')).json).toEqual({ Volumes: [], Err: '' });
    await expectNothingMade(e);
  });

  it('refuses prototype keys by name on every frontend and never applies them', async () => {
    const e = await setup('proto');
    const auth = { authorization: `Bearer ${TOKEN}` };
    const admin: Array<[string, string]> = [
      ['{"name":"p1","__proto__":{"size":"64MiB","backend":"loop"}}', '__proto__'],
      ['{"name":"p2","toString":"x"}', 'toString'],
      ['{"name":"p3","hasOwnProperty":"x"}', 'hasOwnProperty'],
      ['{"name":"p4","labels":{"__proto__":"x"}}', 'labels.__proto__'],
      ['{"name":"p5","options":{"__proto__":{"discard":"true"}}}', 'options.__proto__'],
    ];
    for (const target of [e.admin, e.adminTcp]) {
      for (const [body, field] of admin) {
        const r = await raw(target, 'POST', '/v1/volumes', body, auth);
        expect({ body, status: r.status, error: (r.json as { error: unknown }).error })
          .toEqual({ body, status: 400, error: expect.objectContaining({ kind: 'InvalidArgument', field }) });
      }
    }
    const filter = await raw(e.admin, 'GET', '/v1/volumes?label=__proto__=x');
    expect([filter.status, (filter.json as { error: { field: string } }).error.field]).toEqual([400, 'labels.__proto__']);

    const cli = await runBerth(['--socket', e.d.socket, 'volume', 'create', 'p6', '--label', '__proto__=x']);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/labels\.__proto__/);

    const create = '{"Name":"p7","Opts":{"__proto__":"x","size":"64MiB"}}';
    expect((await dockerPluginCall<{ Err: string }>(dockerSocket(e), 'VolumeDriver.Create', JSON.parse(create))).Err).toMatch(/opts\.__proto__/);
    expect((await dockerTcpCall(e, 'VolumeDriver.Create', create)).json.Err).toMatch(/opts\.__proto__/);
    expect(await dvdcli(e, ['create', `--volumedriver=${e.driver}`, '--volumename=p8', '--volumeopts=__proto__=x'])).toMatch(/opts\.__proto__/);
    expect(await flexFailure(e, ['waitforattach', '/dev/null', '{"volumeName":"p9","__proto__":"x"}'])).toMatch(/options\.__proto__/);

    const csi = createCsiClient(e.d.csiEndpoint);
    try {
      const err = await grpcError(csi.controller('CreateVolume', { name: 'p10', volume_capabilities: [mountCap()], parameters: JSON.parse('{"__proto__":"x"}') }));
      expect([err.code, err.details.split(':')[0]]).toEqual([grpcStatus.INVALID_ARGUMENT, 'parameters.__proto__']);
    } finally {
      csi.close();
    }
    await expectNothingMade(e);
  });

  it('answers huge ids and names at once with short errors, logging no huge line', async () => {
    // Debug: every line a request can cause is written, the access and request lines too.
    const e = await setup('huge', 'debug');
    const csi = createCsiClient(e.d.csiEndpoint);
    try {
      for (const n of [200_000, MB]) {
        const id = 'v'.repeat(n);
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['ControllerGetVolume', () => csi.controller('ControllerGetVolume', { volume_id: id })],
          ['NodeStageVolume', () => csi.node('NodeStageVolume', { volume_id: id, staging_target_path: e.root.path('stage'), volume_capability: mountCap() })],
          ['NodeUnpublishVolume', () => csi.node('NodeUnpublishVolume', { volume_id: id, target_path: e.root.path('target') })],
        ];
        for (const [method, call] of calls) {
          const err = await grpcError(call());
          expect({ method, n, code: err.code, field: err.details.split(':')[0] }).toEqual({ method, n, code: grpcStatus.INVALID_ARGUMENT, field: 'volume_id' });
        }
      }
      expect((await csi.identity('Probe')).ready).toEqual({ value: true });
    } finally {
      csi.close();
    }

    const name = 'n'.repeat(200_000);
    const created = await raw(e.admin, 'POST', '/v1/volumes', { name });
    expect([created.status, (created.json as { error: { field: string } }).error.field]).toEqual([400, 'name']);
    expect(created.text.length).toBeLessThan(1000);
    const ref = await raw(e.admin, 'GET', `/v1/volumes/${'r'.repeat(8000)}`);
    expect([ref.status, (ref.json as { error: { field: string } }).error.field]).toEqual([400, 'ref']);

    const get = await dockerPluginCall<{ Err: string }>(dockerSocket(e), 'VolumeDriver.Get', { Name: name });
    expect(get.Err.length).toBeLessThan(1000);
    const mount = await dockerTcpCall(e, 'VolumeDriver.Mount', JSON.stringify({ Name: 'x', ID: 'i'.repeat(200_000) }));
    expect(mount.json.Err!.length).toBeLessThan(1000);
    expect((await dvdcli(e, ['create', `--volumedriver=${e.driver}`, `--volumename=${name}`])).length).toBeLessThan(1000);
    expect(await flexFailure(e, ['isattached', JSON.stringify({ volumeName: 'r'.repeat(8000) }), 'test-node'])).toMatch(/^invalid argument: ref: /);

    expect(longestLogLine(e)).toBeLessThan(8192);
    await expectNothingMade(e);
  });

  it('answers sizes past the backend or the platform range with OutOfRange naming the field, on every frontend', async () => {
    const e = await setup('size');
    // The loop driver's image must be whole sectors held in a safe integer: at most 2^53-512.
    const tooBig = String(Number.MAX_SAFE_INTEGER);
    const adminCases: Array<[object, string]> = [
      [{ name: 's1', backend: 'loop', size: tooBig }, 'size'],
      [{ name: 's2', backend: 'loop', size: Number(tooBig) }, 'size'],
      [{ name: 's3', backend: 'local', size: '9007199254740992' }, 'size'],
      [{ name: 's4', size: '9000000TiB' }, 'size'],
    ];
    for (const target of [e.admin, e.adminTcp]) {
      for (const [body, field] of adminCases) {
        const r = await raw(target, 'POST', '/v1/volumes', body, { authorization: `Bearer ${TOKEN}` });
        expect({ body, status: r.status, error: (r.json as { error: unknown }).error })
          .toEqual({ body, status: 416, error: expect.objectContaining({ kind: 'OutOfRange', field }) });
      }
    }
    const opts = { Name: 's5', Opts: { backend: 'loop', size: tooBig } };
    expect((await dockerPluginCall<{ Err: string }>(dockerSocket(e), 'VolumeDriver.Create', opts)).Err).toMatch(/^out of range: opts\.size: /);
    // An error is HTTP 500 with Err (Podman reads Err only then); dvdcli, like Docker's own
    // plugin client, names the method in front of a non-200 Err.
    expect(await dockerTcpCall(e, 'VolumeDriver.Create', JSON.stringify(opts)))
      .toMatchObject({ status: 500, json: { Err: expect.stringMatching(/^out of range: opts\.size: /) } });
    expect(await dvdcli(e, ['create', `--volumedriver=${e.driver}`, '--volumename=s6', `--volumeopts=backend=loop,size=${tooBig}`])).toMatch(/^VolumeDriver\.Create: out of range: opts\.size: /);
    expect(await flexFailure(e, ['waitforattach', '/dev/null', goJson({ volumeName: 's7', backend: 'loop', size: tooBig })])).toMatch(/size/);

    const csi = createCsiClient(e.d.csiEndpoint);
    try {
      const base = { volume_capabilities: [mountCap()], parameters: { backend: 'loop' } };
      const viaRange = await grpcError(csi.controller('CreateVolume', { ...base, name: 's8', capacity_range: { required_bytes: tooBig } }));
      expect([viaRange.code, viaRange.details.split(':')[0]]).toEqual([grpcStatus.OUT_OF_RANGE, 'capacity_range']);
      const int64 = await grpcError(csi.controller('CreateVolume', { ...base, name: 's9', capacity_range: { required_bytes: '9223372036854775807' } }));
      expect([int64.code, int64.details.split(':')[0]]).toEqual([grpcStatus.OUT_OF_RANGE, 'capacity_range.required_bytes']);
    } finally {
      csi.close();
    }
    await expectNothingMade(e);

    // 8000TiB: the filesystem holding the images decides (ext4 with 4 KiB blocks stops at
    // 16 TiB per file, EFBIG). Before: 500 Internal. The answer must match the kernel's.
    const probe = e.root.path('efbig-probe');
    const fh = await open(probe, 'w');
    const kernelRefuses = await fh.truncate(8000 * 2 ** 40).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'EFBIG');
    await fh.close();
    await rm(probe);
    const big = await raw(e.admin, 'POST', '/v1/volumes', { name: 'huge', backend: 'loop', size: '8000TiB' });
    if (kernelRefuses) {
      expect([big.status, (big.json as { error: { kind: string; field: string } }).error]).toEqual([416, expect.objectContaining({ kind: 'OutOfRange', field: 'size' })]);
      await expectNothingMade(e);
    } else {
      expect(big.status).toBe(201);
    }
    // Growing a volume past it is refused the same way, and the volume keeps its size.
    await e.d.client.createVolume({ name: 'grow', backend: 'loop', size: '64MiB' });
    const grow = await raw(e.admin, 'POST', '/v1/volumes/grow/expand', { size: tooBig });
    expect([grow.status, (grow.json as { error: { field: string } }).error.field]).toEqual([416, 'size']);
    expect((await e.d.client.inspectVolume('grow')).sizeBytes).toBe(64 * 2 ** 20);
  });

  it('refuses malformed JSON naming the body on every frontend that takes JSON', async () => {
    const e = await setup('json');
    for (const [text, message] of [['{"name": ', 'body: is not valid JSON'], ['[1]', 'body: must be a JSON object'], ['"x"', 'body: must be a JSON object']]) {
      for (const target of [e.admin, e.adminTcp]) {
        const r = await raw(target, 'POST', '/v1/volumes', text, { authorization: `Bearer ${TOKEN}` });
        expect([r.status, r.json]).toEqual([400, { error: { kind: 'InvalidArgument', field: 'body', message } }]);
      }
    }
    const docker = await raw({ socket: dockerSocket(e) }, 'POST', '/VolumeDriver.Create', '{"Name": ');
    expect((docker.json as { Err: string }).Err).toMatch(/^invalid argument: body: request body is not valid JSON/);
    expect((await dockerTcpCall(e, 'VolumeDriver.Create', '[1]')).json.Err).toMatch(/^invalid argument: body: request body must be a JSON object/);
    expect(await flexFailure(e, ['mount', e.root.path('pod'), '{"volumeName": '])).toMatch(/^invalid argument: mount options JSON: not valid JSON/);
    expect(await flexFailure(e, ['waitforattach', '/dev/null', '["x"]'])).toMatch(/expected a JSON object/);
    await expectNothingMade(e);
  });
});
