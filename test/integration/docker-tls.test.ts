// The Docker plugin API over mutual TLS with the real Docker engine: berth's unix socket is
// in the test root, so dockerd reaches the driver only through the <driver>.json spec file
// berth writes into /etc/docker/plugins (https Addr, CAFile, CertFile, KeyFile). A container
// writes and another reads through it; drivers whose .json hands Docker no client
// certificate, an expired one or one from another CA are refused by berth, which logs why.
//
// dockerd keeps a driver's address and TLS client for its whole life: the driver name comes
// from this suite's pool (test/helpers/docker-drivers.ts), with its one fixed https port and
// the machine's fixed certificate files, and dockerd is proven to reach it there before the
// test uses it. The refused names share that address and are held with it; they never
// activate, so dockerd keeps nothing for them. Their spec files go with the name's release.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestDaemon } from '../helpers/daemon.js';
import { cleanupDocker, docker, dockerRun, listDriverVolumes, TEST_IMAGE, uniqueName } from '../helpers/docker.js';
import { acquireDriver, PLUGIN_DIR, refusedTlsNames, SPEC_DIR, specContent } from '../helpers/docker-drivers.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

describe('Docker volume plugin over mutual TLS, announced by a .json spec file', () => {
  it('serves Docker with the client certificate from the spec; refuses none, expired and foreign ones, logging why', async () => {
    const root = roots.create('docker-tls');
    // Registered first: runs last, after the daemon stopped, removing every spec file left.
    const held = await acquireDriver('dockerTls');
    root.defer(held.release);
    const { driver } = held;
    const tcp = held.tcp!;
    const spec = held.spec!;
    const certs = held.tls!;
    const containers: string[] = [];
    const berth = await startTestDaemon(root, {
      defaultBackend: 'loop',
      config: {
        docker: {
          enabled: true, driverName: driver, socket: root.path('run', 'plugin', `${driver}.sock`), tcp, specDir: SPEC_DIR,
          tls: { ca: certs.ca, cert: certs.server.cert, key: certs.server.key, clientCert: certs.client.cert, clientKey: certs.client.key },
        },
      },
    });
    root.defer(() => cleanupDocker({ driver, containers, stopped: berth.pid() === null }));

    expect(existsSync(join(PLUGIN_DIR, `${driver}.sock`))).toBe(false);
    expect(JSON.parse(readFileSync(spec, 'utf8'))).toMatchObject({
      Name: driver, Addr: `https://${tcp}`, TLSConfig: { CAFile: certs.ca, CertFile: certs.client.cert, KeyFile: certs.client.key },
    });
    // Exactly what dockerd was handed for this name when the probe proved it reaches it.
    expect(readFileSync(spec, 'utf8')).toBe(specContent(held));
    expect((await berth.client.status()).daemon?.docker).toMatchObject({ tcp: `https://${tcp}` });

    // A container writes, another one reads, through TLS.
    const v = uniqueName('tlsv');
    await docker(['volume', 'create', '-d', driver, '-o', 'size=64MiB', v]);
    const run = (script: string) => {
      const name = uniqueName('berth-tls');
      containers.push(name);
      return docker(['run', '--rm', '--network', 'none', '--name', name, '-v', `${v}:/data`, TEST_IMAGE, 'sh', '-c', script]);
    };
    await run('echo over-tls > /data/f');
    expect(await run('cat /data/f')).toBe('over-tls');
    expect((await berth.client.inspectVolume(v)).mounts).toEqual([]);
    await docker(['volume', 'rm', v]);
    expect(await listDriverVolumes(driver)).toEqual([]);
    expect(berth.logs()).not.toMatch(/docker\.tls: refused/);

    // Three more names at the same address, each handing Docker a bad client certificate.
    // Docker (Go) presents no certificate at all when its own is not issued by a CA berth
    // names in the handshake, so the foreign one is refused as "none" too.
    const names = refusedTlsNames(driver);
    const none = 'no client certificate was presented (Docker sends none when its certificate is not issued by the CA in docker.tls.ca)';
    const bad = [
      { name: names.nocert, tls: { CAFile: certs.ca }, reason: none },
      { name: names.expired, tls: { CAFile: certs.ca, CertFile: certs.expired.cert, KeyFile: certs.expired.key }, reason: 'the client certificate has expired' },
      { name: names.foreign, tls: { CAFile: certs.ca, CertFile: certs.foreign.cert, KeyFile: certs.foreign.key }, reason: none },
    ];
    for (const b of bad) {
      writeFileSync(join(SPEC_DIR, `${b.name}.json`), JSON.stringify({ Name: b.name, Addr: `https://${tcp}`, TLSConfig: { InsecureSkipVerify: false, ...b.tls } }));
    }
    // dockerd retries a failing plugin call for about 30 s: the three run side by side.
    const results = await Promise.all(bad.map((b) => dockerRun(['volume', 'create', '-d', b.name, uniqueName('refused')], 180_000)));
    for (const [i, r] of results.entries()) {
      expect(r.code, bad[i]!.name).not.toBe(0);
      expect(r.stderr, bad[i]!.name).toMatch(/error looking up volume plugin|connection reset|EOF|tls/i);
    }
    for (const b of bad) expect(berth.logs()).toContain(`docker.tls: refused a client from 127.0.0.1: ${b.reason}`);
    // Nothing reached the core.
    expect(await berth.client.listVolumes()).toEqual([]);
  });
});
