// Daemons started at the same moment on one state root: exactly one claims it (and only
// that one opens and reconciles the store); the others refuse before touching anything.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createAdminClient } from '../../frontends/admin/client.js';
import { BERTH_JS, startTestDaemon } from '../helpers/daemon.js';
import { useTmpRoots } from '../helpers/tmp-root.js';

const roots = useTmpRoots();

describe('state root claim', () => {
  it('lets one of four concurrent daemons start; the rest name the winner and exit 1', async () => {
    const root = roots.create('claim');
    const d = await startTestDaemon(root); // writes the config; stopped again below
    await d.stop();
    expect(existsSync(`${d.stateRoot}/daemon.pid`)).toBe(false);

    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BERTH_')));
    const children: ChildProcess[] = [];
    root.defer(async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
    const exits = new Map<ChildProcess, { code: number | null; stderr: string }>();
    for (let i = 0; i < 4; i++) {
      const c = spawn(process.execPath, [BERTH_JS, 'serve', '--config', d.configFile], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(c);
      let stderr = '';
      c.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      c.once('close', (code) => exits.set(c, { code, stderr }));
    }
    // Losers exit on their own, the winner keeps serving: poll until three have exited.
    const deadline = Date.now() + 60_000;
    while (exits.size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const running = children.filter((c) => !exits.has(c));
    expect(running).toHaveLength(1);
    const winner = running[0]!;
    for (const r of exits.values()) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`another berth daemon \\(pid ${winner.pid}\\) is using the state root`));
    }
    const admin = createAdminClient({ socket: d.socket });
    while (!(await admin.status().then((s) => s.ready, () => false))) {
      expect(Date.now() < deadline, 'the winner becomes ready').toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(readFileSync(`${d.stateRoot}/daemon.pid`, 'utf8').trim()).toBe(String(winner.pid));
    expect(readdirSync(d.stateRoot).filter((n) => n.startsWith('daemon.pid.'))).toEqual([]);

    const stopped = new Promise((res) => winner.once('exit', res));
    winner.kill('SIGTERM');
    await stopped;
    expect(existsSync(`${d.stateRoot}/daemon.pid`)).toBe(false);
  });
});
