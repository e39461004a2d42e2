import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from './config.js';
import { loadConfig } from './config-load.js';
import { BerthError } from './errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const missingDefault = () => join(dir, 'absent.yaml');

function expectInvalid(fn: () => unknown, field: string, message?: RegExp): BerthError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    const e = err as BerthError;
    expect(e.kind).toBe('InvalidArgument');
    expect(e.field).toBe(field);
    if (message) expect(e.message).toMatch(message);
    return e;
  }
  throw new Error('expected an InvalidArgument error');
}

describe('loadConfig', () => {
  it('uses the embedded defaults when the default file is missing', () => {
    const c = loadConfig({ env: {}, defaultFile: missingDefault() });
    expect(c).toEqual(defaultConfig());
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.admin)).toBe(true);
    expect(Object.isFrozen(c.backends.local)).toBe(true);
  });

  it('refuses a missing explicit config file', () => {
    expectInvalid(() => loadConfig({ file: join(dir, 'nope.yaml'), env: {} }), 'config', /no such file/);
  });

  it('reads YAML, replaces backends whole and resolves relative paths against the file', () => {
    const file = write('c.yaml', [
      'stateRoot: state',
      'defaultBackend: fast',
      'backends:',
      '  fast: { driver: loop, defaultFs: xfs }',
      'admin: { socket: /tmp/x/admin.sock }',
      'docker: { enabled: false }',
    ].join('\n'));
    const c = loadConfig({ file, env: {} });
    expect(c.stateRoot).toBe(join(dir, 'state'));
    expect(c.backends).toEqual({ fast: { driver: 'loop', defaultFs: 'xfs' } });
    expect(c.admin.socket).toBe('/tmp/x/admin.sock');
    expect(c.docker.enabled).toBe(false);
    expect(c.docker.driverName).toBe('berth'); // untouched keys keep defaults
  });

  it('lets env override the file and flags override env', () => {
    const file = write('c.yaml', 'stateRoot: /from/file\nnodeId: file-node\n');
    const c = loadConfig({
      file,
      env: { BERTH_STATE_ROOT: '/from/env', BERTH_NODE_ID: 'env-node', BERTH_CSI_ENABLED: 'false', BERTH_LOCK_WAIT_MS: '500' },
      flags: { stateRoot: '/from/flag' },
    });
    expect(c.stateRoot).toBe('/from/flag');
    expect(c.nodeId).toBe('env-node');
    expect(c.csi.enabled).toBe(false);
    expect(c.lockWaitMs).toBe(500);
  });

  it('takes the file from BERTH_CONFIG', () => {
    const file = write('c.yaml', 'nodeId: n1\n');
    expect(loadConfig({ env: { BERTH_CONFIG: file } }).nodeId).toBe('n1');
    // Empty means none (the managed plugin's default): the default file, or the embedded defaults.
    expect(loadConfig({ env: { BERTH_CONFIG: '' }, defaultFile: join(dir, 'absent.yaml') }).stateRoot).toBe('/var/lib/berth');
  });

  it('names an unknown key and suggests the closest known key', () => {
    const file = write('c.yaml', 'admin:\n  sockt: /x.sock\n');
    expectInvalid(() => loadConfig({ file, env: {} }), 'admin.sockt', /did you mean "admin.socket"/);
    const top = write('t.yaml', 'stateroot: /x\n');
    expectInvalid(() => loadConfig({ file: top, env: {} }), 'stateroot', /did you mean "stateRoot"/);
  });

  it('names a bad value with its key', () => {
    expectInvalid(() => loadConfig({ file: write('a.yaml', 'log: { level: loud }\n'), env: {} }), 'log.level');
    expectInvalid(() => loadConfig({ file: write('b.yaml', 'lockWaitMs: -1\n'), env: {} }), 'lockWaitMs');
    expectInvalid(() => loadConfig({ file: write('c.yaml', 'backends: { x: { root: /a } }\ndefaultBackend: x\n'), env: {} }), 'backends.x.driver');
    expectInvalid(() => loadConfig({ env: { BERTH_DOCKER_ENABLED: 'maybe' }, defaultFile: missingDefault() }), 'BERTH_DOCKER_ENABLED');
  });

  it('takes a periodic reconcile interval: 0 (default, start-up only) or at least 1000 ms', () => {
    expect(loadConfig({ env: {}, defaultFile: missingDefault() }).reconcileIntervalMs).toBe(0);
    expect(loadConfig({ env: { BERTH_RECONCILE_INTERVAL_MS: '300000' }, defaultFile: missingDefault() }).reconcileIntervalMs).toBe(300_000);
    expectInvalid(() => loadConfig({ file: write('r.yaml', 'reconcileIntervalMs: 50\n'), env: {} }), 'reconcileIntervalMs', /at least 1000/);
  });

  it('refuses a default backend that is not configured', () => {
    expectInvalid(() => loadConfig({ env: { BERTH_DEFAULT_BACKEND: 'locl' }, defaultFile: missingDefault() }), 'defaultBackend', /did you mean "local"/);
  });

  it('refuses a TCP admin listener without a token', () => {
    expectInvalid(() => loadConfig({ env: { BERTH_ADMIN_TCP: '127.0.0.1:7070' }, defaultFile: missingDefault() }), 'admin.token');
    const c = loadConfig({ env: { BERTH_ADMIN_TCP: '127.0.0.1:7070', BERTH_ADMIN_TOKEN: 's3cret' }, defaultFile: missingDefault() });
    expect(c.admin.tcp).toBe('127.0.0.1:7070');
    const withToken = (tcp: string) => ({ env: { BERTH_ADMIN_TCP: tcp, BERTH_ADMIN_TOKEN: 's3cret' }, defaultFile: missingDefault() });
    expectInvalid(() => loadConfig(withToken('127.0.0.1:99999')), 'admin.tcp', /1-65535/);
    expectInvalid(() => loadConfig(withToken('127.0.0.1:0')), 'admin.tcp', /1-65535/);
    expectInvalid(() => loadConfig(withToken('localhost')), 'admin.tcp', /host:port/);
  });

  it('refuses two listeners on one socket path', () => {
    expectInvalid(() => loadConfig({ env: { BERTH_SOCKET: '/run/x.sock', BERTH_CSI_ENDPOINT: '/run/x.sock' }, defaultFile: missingDefault() }), 'csi.endpoint');
  });

  it('takes socketGroup as a group name (resolved to its gid), a gid, or BERTH_SOCKET_GROUP; an unknown name is named', () => {
    const groupFile = write('group', 'root:x:0:\nberth-ops:x:4711:alice,bob\nbad:x:notanumber:\n');
    const load = (o: Partial<Parameters<typeof loadConfig>[0]>) => loadConfig({ env: {}, defaultFile: missingDefault(), groupFile, ...o });
    expect(load({}).socketGroup).toBeNull();
    expect(load({ file: write('g.yaml', 'socketGroup: berth-ops\n') }).socketGroup).toBe(4711);
    expect(load({ file: write('n.yaml', 'socketGroup: 998\n') }).socketGroup).toBe(998);
    expect(load({ env: { BERTH_SOCKET_GROUP: '1234' } }).socketGroup).toBe(1234);
    expect(load({ env: { BERTH_SOCKET_GROUP: 'berth-ops' } }).socketGroup).toBe(4711);
    expect(load({ file: write('g2.yaml', 'socketGroup: berth-ops\n'), env: { BERTH_SOCKET_GROUP: '' } }).socketGroup).toBeNull();
    expectInvalid(() => load({ env: { BERTH_SOCKET_GROUP: 'no-such-group' } }), 'socketGroup', /unknown group "no-such-group".*has no such group/);
    expectInvalid(() => load({ env: { BERTH_SOCKET_GROUP: 'bad' } }), 'socketGroup', /unknown group "bad"/);
    expectInvalid(() => load({ file: write('neg.yaml', 'socketGroup: -1\n') }), 'socketGroup');
    expectInvalid(() => load({ env: { BERTH_SOCKET_GROUP: '99999999999' } }), 'socketGroup', /out of range/);
    expectInvalid(() => load({ file: write('sp.yaml', 'socketGroup: "a b"\n') }), 'socketGroup', /group name or a numeric gid/);
    // The real /etc/group by default.
    expect(loadConfig({ env: { BERTH_SOCKET_GROUP: 'root' }, defaultFile: missingDefault() }).socketGroup).toBe(0);
  });

  it('refuses invalid YAML and a non-mapping document', () => {
    expectInvalid(() => loadConfig({ file: write('bad.yaml', 'a: [1, 2\n'), env: {} }), 'config', /not valid YAML/);
    expectInvalid(() => loadConfig({ file: write('list.yaml', '- 1\n'), env: {} }), 'config', /mapping/);
  });

  it('warns about an unknown BERTH_* variable instead of silently using it', () => {
    const warnings: string[] = [];
    loadConfig({ env: { BERTH_STATEROOT: '/x' }, defaultFile: missingDefault(), onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([expect.stringMatching(/BERTH_STATEROOT.*BERTH_STATE_ROOT/)]);
  });

  it('accepts unix:// CSI endpoints and stores the path', () => {
    const c = loadConfig({ env: { BERTH_CSI_ENDPOINT: 'unix:///run/b/csi.sock' }, defaultFile: missingDefault() });
    expect(c.csi.endpoint).toBe('/run/b/csi.sock');
  });

  it('takes targets.allowedPrefixes from the file or BERTH_TARGETS_ALLOWED_PREFIXES (colon-separated), normalized', () => {
    expect(loadConfig({ env: {}, defaultFile: missingDefault() }).targets.allowedPrefixes)
      .toEqual(['/var/lib/kubelet', '/var/lib/mesos', '/var/lib/nomad', '/opt/nomad', '/mnt', '/media']);
    const file = write('t.yaml', 'targets: { allowedPrefixes: [/srv/pods/, /data/k8s] }\n');
    expect(loadConfig({ file, env: {} }).targets.allowedPrefixes).toEqual(['/srv/pods', '/data/k8s']);
    const env = { BERTH_TARGETS_ALLOWED_PREFIXES: '/srv/a:/srv/b' };
    expect(loadConfig({ file, env }).targets.allowedPrefixes).toEqual(['/srv/a', '/srv/b']);
    // Empty: no target is allowed anywhere (a Docker-only host).
    expect(loadConfig({ env: { BERTH_TARGETS_ALLOWED_PREFIXES: '' }, defaultFile: missingDefault() }).targets.allowedPrefixes).toEqual([]);
  });

  it('refuses a relative, unnormalized or system prefix, or one inside the state root, naming the entry', () => {
    const bad = (list: string, field: string, message: RegExp) =>
      expectInvalid(() => loadConfig({ env: { BERTH_TARGETS_ALLOWED_PREFIXES: list }, defaultFile: missingDefault() }), field, message);
    bad('/mnt:pods', 'targets.allowedPrefixes[1]', /"pods" must be an absolute path/);
    bad('/srv/../etc', 'targets.allowedPrefixes[0]', /normalized/);
    for (const sys of ['/', '/var/lib', '/tmp', '/home', '/run']) bad(sys, 'targets.allowedPrefixes[0]', /must not be \/|system directory/);
    bad('/mnt:/etc/kubernetes', 'targets.allowedPrefixes[1]', /under \/etc, a system directory/);
    bad('/proc/1', 'targets.allowedPrefixes[0]', /under \/proc/);
    expectInvalid(() => loadConfig({ env: { BERTH_STATE_ROOT: '/srv/berth', BERTH_TARGETS_ALLOWED_PREFIXES: '/srv/berth/mnt' }, defaultFile: missingDefault() }),
      'targets.allowedPrefixes[0]', /inside berth's state root/);
    expectInvalid(() => loadConfig({ file: write('n.yaml', 'targets: { allowedPrefixes: /mnt }\n'), env: {} }), 'targets.allowedPrefixes');
    expectInvalid(() => loadConfig({ file: write('u.yaml', 'targets: { allowedPrefix: [/mnt] }\n'), env: {} }), 'targets.allowedPrefix',
      /did you mean "targets.allowedPrefixes"/);
  });
});
