// The docker.tcp / docker.tls / docker.specDir keys: off by default, validated with errors
// that name the key; a plain listener is loopback-only, any other address needs mutual TLS.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isLoopbackHost, loadConfig } from './config-load.js';
import { BerthError } from './errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-config-docker-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const missingDefault = () => join(dir, 'absent.yaml');
const fromEnv = (env: Record<string, string>) => loadConfig({ env, defaultFile: missingDefault() });
const fromFile = (yaml: string) => {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return loadConfig({ file, env: {} });
};

function invalid(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('InvalidArgument');
    return err as BerthError;
  }
  throw new Error('expected an InvalidArgument error');
}

describe('docker TCP listener config', () => {
  it('is off by default; the spec dir is the one dockerd reads', () => {
    const c = fromEnv({});
    expect(c.docker).toMatchObject({ tcp: null, specDir: '/etc/docker/plugins', tls: { ca: null, cert: null, key: null, clientCert: null, clientKey: null } });
  });

  it('takes loopback host:port from the file, the environment and `berth serve --docker-tcp` (port 0 = any free port)', () => {
    expect(loadConfig({ env: {}, defaultFile: missingDefault(), flags: { dockerTcp: '127.0.0.1:9124' } }).docker.tcp).toBe('127.0.0.1:9124');
    expect(() => loadConfig({ env: {}, defaultFile: missingDefault(), flags: { dockerTcp: '10.1.2.3:9124' } })).toThrow(/docker\.tcp/);
    expect(fromFile('docker:\n  tcp: "127.0.0.1:9123"\n').docker.tcp).toBe('127.0.0.1:9123');
    expect(fromEnv({ BERTH_DOCKER_TCP: '127.0.0.1:0' }).docker.tcp).toBe('127.0.0.1:0');
    expect(fromEnv({ BERTH_DOCKER_TCP: '[::1]:9123' }).docker.tcp).toBe('[::1]:9123');
    expect(fromEnv({ BERTH_DOCKER_TCP: 'localhost:9123' }).docker.tcp).toBe('localhost:9123');
    expect(fromEnv({ BERTH_DOCKER_TCP: ':9123' }).docker.tcp).toBe(':9123');
    // An empty variable switches it off again, as with BERTH_ADMIN_TCP.
    expect(fromEnv({ BERTH_DOCKER_TCP: '' }).docker.tcp).toBeNull();
  });

  it('resolves a relative spec dir against the config file', () => {
    const c = fromFile('docker:\n  specDir: plugins\n');
    expect(c.docker.specDir).toBe(join(dir, 'plugins'));
    expect(fromEnv({ BERTH_DOCKER_SPEC_DIR: '/tmp/x/plugins' }).docker.specDir).toBe('/tmp/x/plugins');
  });

  it('refuses a malformed address or port, naming docker.tcp', () => {
    for (const bad of ['9123', 'localhost', '127.0.0.1:', '127.0.0.1:99999', '127.0.0.1:-1', 'tcp://127.0.0.1:9123', '::1:9123', '127.0.0.1 :80']) {
      const e = invalid(() => fromEnv({ BERTH_DOCKER_TCP: bad }));
      expect(e.field, bad).toBe('docker.tcp');
      expect(e.message, bad).toMatch(/docker\.tcp: (must be "host:port"|the port must be 0-65535)/);
    }
    const e = invalid(() => fromFile('docker:\n  tcp: 9123\n'));
    expect(e.field).toBe('docker.tcp');
  });

  it('refuses a non-loopback address without mutual TLS, naming docker.tls and saying why', () => {
    for (const remote of ['0.0.0.0:9123', '10.1.2.3:9123', '[::]:9123', 'example.com:9123']) {
      const e = invalid(() => fromEnv({ BERTH_DOCKER_TCP: remote }));
      expect(e.field, remote).toBe('docker.tls');
      expect(e.message).toMatch(/not a loopback address.*no authentication.*requires mutual TLS: set docker\.tls\.ca/);
    }
  });

  it('takes docker.tls from the file (relative to it) and the environment; any address may then listen', () => {
    const c = fromFile('docker:\n  tcp: "0.0.0.0:9443"\n  tls: { ca: ca.pem, cert: server.pem, key: server.key, clientCert: /etc/docker/berth/cert.pem, clientKey: /etc/docker/berth/key.pem }\n');
    expect(c.docker.tcp).toBe('0.0.0.0:9443');
    expect(c.docker.tls).toEqual({
      ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key'),
      clientCert: '/etc/docker/berth/cert.pem', clientKey: '/etc/docker/berth/key.pem',
    });
    const e = fromEnv({
      BERTH_DOCKER_TCP: '10.1.2.3:9443', BERTH_DOCKER_TLS_CA: '/t/ca.pem', BERTH_DOCKER_TLS_CERT: '/t/s.pem',
      BERTH_DOCKER_TLS_KEY: '/t/s.key', BERTH_DOCKER_TLS_CLIENT_CERT: '/t/c.pem', BERTH_DOCKER_TLS_CLIENT_KEY: '/t/c.key',
    });
    expect(e.docker.tls).toEqual({ ca: '/t/ca.pem', cert: '/t/s.pem', key: '/t/s.key', clientCert: '/t/c.pem', clientKey: '/t/c.key' });
  });

  it('takes TLS as all or nothing, and only with docker.tcp, naming the missing key', () => {
    const all = { BERTH_DOCKER_TCP: '127.0.0.1:9443', BERTH_DOCKER_TLS_CA: '/t/ca.pem', BERTH_DOCKER_TLS_CERT: '/t/s.pem', BERTH_DOCKER_TLS_KEY: '/t/s.key', BERTH_DOCKER_TLS_CLIENT_CERT: '/t/c.pem', BERTH_DOCKER_TLS_CLIENT_KEY: '/t/c.key' };
    for (const [name, key] of [['BERTH_DOCKER_TLS_CA', 'ca'], ['BERTH_DOCKER_TLS_KEY', 'key'], ['BERTH_DOCKER_TLS_CLIENT_KEY', 'clientKey']] as const) {
      const e = invalid(() => fromEnv({ ...all, [name]: '' }));
      expect(e.field, name).toBe(`docker.tls.${key}`);
      expect(e.message).toMatch(/is required with docker\.tls\./);
    }
    const noTcp = invalid(() => fromEnv({ ...all, BERTH_DOCKER_TCP: '' }));
    expect(noTcp.field).toBe('docker.tcp');
    expect(noTcp.message).toMatch(/docker\.tls\.ca is set but docker\.tcp is not/);
  });

  it('explains the removed docker.tcpAllowRemote instead of guessing', () => {
    const e = invalid(() => fromFile('docker:\n  tcp: "0.0.0.0:9123"\n  tcpAllowRemote: true\n'));
    expect(e.field).toBe('docker.tcpAllowRemote');
    expect(e.message).toMatch(/docker\.tcpAllowRemote was removed.*requires mutual TLS \(docker\.tls\.ca/);
    expect(invalid(() => fromEnv({ BERTH_DOCKER_TCP_ALLOW_REMOTE: 'true' })).field).toBe('BERTH_DOCKER_TCP_ALLOW_REMOTE');
  });

  it('ignores docker.tcp while the Docker frontend is disabled', () => {
    expect(fromEnv({ BERTH_DOCKER_ENABLED: 'false', BERTH_DOCKER_TCP: '10.1.2.3:9123' }).docker.tcp).toBe('10.1.2.3:9123');
  });

  it('refuses a driver name that cannot be a spec file name', () => {
    const e = invalid(() => fromEnv({ BERTH_DOCKER_TCP: '127.0.0.1:0', BERTH_DOCKER_DRIVER_NAME: '../evil' }));
    expect(e.field).toBe('docker.driverName');
  });

  it('names an unknown key under docker with the closest known one', () => {
    const e = invalid(() => fromFile('docker:\n  specDri: /x\n'));
    expect(e.field).toBe('docker.specDri');
    expect(e.message).toMatch(/did you mean "docker\.specDir"/);
    const t = invalid(() => fromFile('docker:\n  tls:\n    clientCrt: /x\n'));
    expect(t.field).toBe('docker.tls.clientCrt');
    expect(t.message).toMatch(/did you mean "docker\.tls\.clientCert"/);
  });

  it('knows which hosts are loopback', () => {
    for (const h of ['', '127.0.0.1', '127.8.9.10', 'localhost', 'LOCALHOST', '[::1]', '::1', '[0:0:0:0:0:0:0:1]', '[::ffff:127.0.0.1]']) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const h of ['0.0.0.0', '[::]', '10.0.0.1', '128.0.0.1', 'example.com', 'localhost.example.com', '[::ffff:10.0.0.1]']) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });
});
