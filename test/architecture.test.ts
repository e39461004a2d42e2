// Import rules from the style anchors (convention 10), checked by reading import statements:
// the layering is what keeps frontends thin and the per-call executables fast to start.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_KINDS } from '../core/errors.js';

const ROOT = new URL('..', import.meta.url).pathname;
const SOURCE_DIRS = ['core', 'backends', 'frontends', 'cli'];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('.case.ts')) out.push(p);
  }
  return out;
}

const files = SOURCE_DIRS.flatMap((d) => sourceFiles(join(ROOT, d))).map((abs) => {
  const text = readFileSync(abs, 'utf8');
  return {
    path: relative(ROOT, abs),
    text,
    imports: [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!),
  };
});

/** `spec` as a path relative to the tree root ('' for packages and node: builtins). */
function resolved(file: string, spec: string): string {
  return spec.startsWith('.') ? relative(ROOT, join(ROOT, dirname(file), spec)) : '';
}

const importing = (pred: (spec: string) => boolean) =>
  files.filter((f) => f.imports.some(pred)).map((f) => f.path).sort();

describe('architecture', () => {
  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it('core/user-input.ts imports nothing (the per-call executables load it)', () => {
    expect(files.find((f) => f.path === 'core/user-input.ts')?.imports).toEqual([]);
  });

  it('only core/os/exec.ts starts processes', () => {
    expect(importing((s) => s === 'node:child_process' || s === 'child_process')).toEqual(['core/os/exec.ts']);
  });

  it('only core/os/sys.ts loads the system-call addon, and only core/os/ imports sys.ts', () => {
    // The addon is loaded by path (createRequire / process.dlopen) from build/Release/berth_os.node.
    const loaders = files.filter((f) => /berth_os|process\.dlopen|createRequire\(/.test(f.text)).map((f) => f.path).sort();
    expect(loaders).toEqual(['core/os/sys.ts']);
    const users = files.filter((f) => f.imports.some((s) => resolved(f.path, s) === 'core/os/sys.js')).map((f) => f.path);
    expect(users.filter((p) => !p.startsWith('core/os/'))).toEqual([]);
    // No FFI library either: system calls go through the addon only.
    expect(importing((s) => /^(koffi|ffi-napi|ffi-rs|node-ffi)/.test(s))).toEqual([]);
  });

  it('only the SQLite store imports better-sqlite3', () => {
    expect(importing((s) => s === 'better-sqlite3')).toEqual(['core/store/sqlite.ts']);
  });

  it('core and backends import no protocol library', () => {
    const protocolLibs = (s: string) => /^(hono|@hono\/|@grpc\/|yargs)/.test(s);
    expect(importing(protocolLibs).filter((p) => p.startsWith('core/') || p.startsWith('backends/'))).toEqual([]);
  });

  it('frontends reach the core only through core/index.ts and its type modules', () => {
    const bad = files
      .filter((f) => f.path.startsWith('frontends/'))
      .flatMap((f) =>
        f.imports
          .filter((s) => /\/core\//.test(s) && !/\/core\/(index|errors|types|service|config|observe|log|user-input)\.js$/.test(s))
          .map((s) => `${f.path} -> ${s}`),
      );
    expect(bad).toEqual([]);
  });

  it('frontends never touch SQL or OS modules', () => {
    const bad = importing((s) => /core\/(store|os)\//.test(s)).filter((p) => p.startsWith('frontends/'));
    expect(bad).toEqual([]);
  });

  it('the per-call executables load no server code', () => {
    const perCall = files.filter((f) => f.path.startsWith('frontends/flexvolume/') || f.path.startsWith('frontends/dvdcli/'));
    const heavy = perCall.flatMap((f) =>
      f.imports
        .filter((s) => /^(hono|@hono\/|@grpc\/|better-sqlite3|yargs|pino|zod|prom-client)/.test(s) || /core\/index\.js$/.test(s))
        .map((s) => `${f.path} -> ${s}`),
    );
    expect(heavy).toEqual([]);
  });

  it('flexvolume/ and dvdcli/ import nothing beyond their folder, the admin client, the HTTP/1.1 client, the exit helper and the core error/type modules', () => {
    // Each call of these executables is a fresh process: what they import is their cold start.
    const allowed = (folder: string) => (target: string) =>
      target.startsWith(`${folder}/`) ||
      ['frontends/admin/client.ts', 'frontends/http1-client.ts', 'frontends/process-exit.ts', 'core/errors.ts', 'core/types.ts', 'core/user-input.ts', 'package.json'].includes(target.replace(/\.js$/, '.ts'));
    const bad = files
      .filter((f) => f.path.startsWith('frontends/flexvolume/') || f.path.startsWith('frontends/dvdcli/'))
      .flatMap((f) => {
        const folder = f.path.split('/').slice(0, 2).join('/');
        return f.imports
          .map((s) => resolved(f.path, s))
          .filter((t) => t !== '' && !allowed(folder)(t))
          .map((t) => `${f.path} -> ${t}`);
      });
    expect(bad).toEqual([]);
  });

  it('the clients started per call speak HTTP through http1-client.ts, never node:http (a third of a cold start)', () => {
    const clients = (p: string) =>
      p.startsWith('frontends/flexvolume/') || p.startsWith('frontends/dvdcli/') || p === 'frontends/admin/client.ts' || p === 'frontends/admin/errors.ts' ||
      p === 'frontends/http1-client.ts' || (p.startsWith('cli/') && p !== 'cli/daemon.ts' && p !== 'cli/metrics.ts');
    const dynamicHttp = files.filter((f) => /import\(\s*['"](node:)?https?['"]\s*\)/.test(f.text)).map((f) => f.path);
    expect([...importing((s) => /^(node:)?https?$/.test(s)), ...dynamicHttp].filter(clients)).toEqual([]);
  });

  it('every protocol frontend maps error kinds in its own errors.ts, and nowhere else', () => {
    for (const p of ['admin', 'docker', 'csi', 'flexvolume', 'dvdcli']) {
      expect(files.some((f) => f.path === `frontends/${p}/errors.ts`), `frontends/${p}/errors.ts`).toBe(true);
    }
    // A `case '<Kind>':` is a kind -> protocol mapping; one switch per frontend, in errors.ts.
    const kindCase = new RegExp(`case '(${ERROR_KINDS.join('|')})'`);
    const bad = files
      .filter((f) => (f.path.startsWith('frontends/') || f.path.startsWith('cli/')) && !f.path.endsWith('/errors.ts'))
      .filter((f) => kindCase.test(f.text))
      .map((f) => f.path);
    expect(bad).toEqual([]);
  });

  it('no module-level mutable state: no top-level let/var, no top-level instances but constant lookup tables', () => {
    const bad = files.flatMap((f) =>
      f.text
        .split('\n')
        .map((line, i) => ({ line, n: i + 1 }))
        .filter(({ line }) => /^(export )?(let|var) /.test(line) || /^(export )?const \w+(: [^=]+)? = new (?!(Set|Map|RegExp)\b)/.test(line))
        .map(({ line, n }) => `${f.path}:${n}: ${line.trim()}`),
    );
    expect(bad).toEqual([]);
  });

  it('test doubles live under test/: production code imports nothing from there, and no fake or case file sits beside it', () => {
    // The fake backend, its harness and the conformance cases are for tests; the daemon, the
    // image and the per-call executables must not be able to reach them.
    const bad = files.flatMap((f) => f.imports.map((s) => resolved(f.path, s)).filter((t) => t.startsWith('test/')).map((t) => `${f.path} -> ${t}`));
    expect(bad).toEqual([]);
    const walk = (dir: string): string[] =>
      readdirSync(dir).flatMap((name) => {
        const p = join(dir, name);
        return statSync(p).isDirectory() ? walk(p) : [relative(ROOT, p)];
      });
    const doubles = SOURCE_DIRS.flatMap((d) => walk(join(ROOT, d))).filter((p) => p.endsWith('.case.ts') || /(^|\/)fake(\/|\.)/.test(p));
    expect(doubles).toEqual([]);
  });

  it('cli talks to the daemon through the admin client (only daemon.ts composes the core)', () => {
    const bad = files
      // The composition roots: the daemon's (daemon.ts, serve) and the fence agent's (fence-agent-main.ts).
      .filter((f) => f.path.startsWith('cli/') && f.path !== 'cli/daemon.ts' && f.path !== 'cli/fence-agent-main.ts' && !f.path.startsWith('cli/commands/serve'))
      .flatMap((f) => f.imports.filter((s) => /\/(core\/(store|os|volume-service)|backends\/)/.test(s)).map((s) => `${f.path} -> ${s}`));
    expect(bad).toEqual([]);
  });
});
