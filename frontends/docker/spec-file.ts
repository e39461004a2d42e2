/**
 * The plugin spec file that tells Docker where a TCP-served volume plugin listens:
 * - plain: <specDir>/<driverName>.spec holding one URL, "tcp://127.0.0.1:9123";
 * - mutual TLS: <specDir>/<driverName>.json, {"Name","Addr":"https://127.0.0.1:9443",
 *   "TLSConfig":{"CAFile","CertFile","KeyFile"}} (moby pkg/plugins reads TLS only from
 *   .json, and speaks TLS only to an https:// Addr).
 * dockerd (and dvdcli) read it on first use of the driver name, so it is written only once
 * the listener is up, whole (temporary file + rename: a reader never sees half of it), and
 * removed on stop. A spec file left by a daemon that crashed is simply replaced.
 *
 * @example
 *   const spec = await writeSpecFile('/etc/docker/plugins', 'berth', 'tcp://127.0.0.1:9123');
 *   ...
 *   await spec.remove();
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface SpecFile {
  readonly path: string;
  readonly url: string;
  /** Removes the file unless another process has replaced it since (it is theirs then). */
  remove(): Promise<void>;
}

/** The files Docker uses for mutual TLS with the plugin (paths on Docker's host). */
export interface SpecTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * Writes <dir>/<driverName>.spec (or .json with `tls`) atomically; mode 0644: dockerd runs
 * as root, dvdcli may not, and the file holds paths, never key material.
 */
export async function writeSpecFile(dir: string, driverName: string, url: string, tls?: SpecTls): Promise<SpecFile> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, `${driverName}${tls ? '.json' : '.spec'}`);
  const content = tls
    ? `${JSON.stringify({
      Name: driverName,
      Addr: url,
      TLSConfig: { InsecureSkipVerify: false, CAFile: tls.caFile, CertFile: tls.certFile, KeyFile: tls.keyFile },
    }, null, 2)}\n`
    : `${url}\n`;
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, content, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return {
    path,
    url,
    async remove() {
      const now = await readFile(path, 'utf8').catch(() => null);
      if (now === content) await rm(path, { force: true });
    },
  };
}

/**
 * The URL Docker should dial for a listener bound at `address`: the real port (docker.tcp
 * may say 0), and a wildcard bind announced as loopback, since the spec file is read by
 * the Docker engine on this host. https:// for a TLS listener (Docker's plugin client
 * speaks TLS only to that scheme), tcp:// otherwise.
 */
export function specUrl(address: AddressInfo, tls = false): string {
  let host = address.address;
  if (host === '0.0.0.0' || host === '::') host = '127.0.0.1';
  return `${tls ? 'https' : 'tcp'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}
