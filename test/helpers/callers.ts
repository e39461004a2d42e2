/**
 * Runs the per-call executables the way their real callers do, for the FlexVolume and
 * dvdcli integration suites:
 * - kubelet: exec of the absolute driver path (its #! line), stdin /dev/null, stdout and
 *   stderr into one buffer parsed as exactly one JSON value (flexvolume.md §2-3), option
 *   JSON marshalled like Go's json.Marshal of a map[string]string.
 * - Mesos: exec of the absolute `dvdcli` path found on PATH, stdin /dev/null, separate pipes,
 *   the whole trimmed stdout is the mount path (dvdcli-mesos.md §3).
 * Also a raw Docker volume plugin call over a unix socket, as Docker sends it.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { expect } from 'vitest';

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr interleaved as they arrived (kubelet's CombinedOutput). */
  readonly combined: string;
  readonly ms: number;
}

/** Environment of the caller without the test process' BERTH_* variables. */
export function callerEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('BERTH_')) env[k] = v;
  return { ...env, ...extra };
}

export function execFile(path: string, args: readonly string[], env: Record<string, string> = callerEnv()): Promise<ExecResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const c = spawn(path, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let combined = '';
    c.stdout.on('data', (b: Buffer) => ((stdout += b.toString()), (combined += b.toString())));
    c.stderr.on('data', (b: Buffer) => ((stderr += b.toString()), (combined += b.toString())));
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, stdout, stderr, combined, ms: Date.now() - started }));
  });
}

/** Go's json.Marshal(map[string]string): keys sorted bytewise, <, >, &, U+2028/2029 escaped. */
export function goJson(map: Record<string, string>): string {
  const keys = Object.keys(map).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : Buffer.from(a) > Buffer.from(b) ? 1 : 0));
  const body = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(map[k])}`).join(',');
  return `{${body}}`
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export interface FlexResult extends ExecResult {
  /** The one JSON value kubelet parsed from the combined output. */
  readonly reply: { status: string; message?: string; device?: string; attached?: boolean; capabilities?: Record<string, boolean> };
}

/** Runs a FlexVolume driver call like kubelet; throws when the output is not exactly one JSON value. */
export async function kubeletCall(driver: string, args: readonly string[], env?: Record<string, string>): Promise<FlexResult> {
  const r = await execFile(driver, args, env);
  let reply: FlexResult['reply'];
  try {
    reply = JSON.parse(r.combined) as FlexResult['reply'];
  } catch (err) {
    throw new Error(`driver output is not one JSON value (${(err as Error).message}): ${JSON.stringify(r.combined)}`);
  }
  if (reply === null || typeof reply !== 'object') throw new Error(`driver output is not a JSON object: ${r.combined}`);
  return { ...r, reply };
}

/**
 * A kubeletCall that also holds the driver to kubelet's rules on every call: nothing on
 * stderr (kubelet parses stdout and stderr together) and exit 1 exactly for a Failure.
 * @example const call = strictKubeletCall(exe); expect(await call('init')).toMatchObject({ status: 'Success' });
 */
export function strictKubeletCall(driver: string): (...args: string[]) => Promise<FlexResult['reply']> {
  return async (...args) => {
    const r = await kubeletCall(driver, args);
    expect(r.stderr, `stderr of ${args[0]}`).toBe('');
    expect(r.code, `exit of ${args[0]}: ${r.stdout}`).toBe(r.reply.status === 'Failure' ? 1 : 0);
    return r.reply;
  };
}

/** POST /<method> to a Docker volume plugin socket; resolves the decoded JSON reply. */
export function dockerPluginCall<T = Record<string, unknown>>(socketPath: string, method: string, body: unknown): Promise<T> {
  const payload = `${JSON.stringify(body)}\n`;
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: `/${method}`, method: 'POST', headers: { accept: 'application/vnd.docker.plugins.v1.2+json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          try {
            resolve(JSON.parse(text) as T);
          } catch {
            reject(new Error(`${method}: not JSON (${res.statusCode}): ${text}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Mount points from /proc/self/mountinfo: target -> source device. */
export async function mountTable(): Promise<Map<string, string>> {
  const { readFile } = await import('node:fs/promises');
  const out = new Map<string, string>();
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const target = line.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.set(target, line.slice(sep + 3).split(' ')[1] ?? '');
  }
  return out;
}
