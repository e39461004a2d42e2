// Import rules from the style anchors (convention 10), checked by reading import statements:
// the layering is what keeps frontends thin and the per-call executables fast to start.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinDrivers } from '../backends/index.js';
import { ERROR_KINDS } from '../core/errors.js';
import { ALLOWED_BINARIES } from '../core/os/exec.js';

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
    // The other loader is the per-call executables' socket addon (berth_sock), never berth_os.
    expect(loaders).toEqual(['core/os/sys.ts', 'frontends/blocking-socket.ts']);
    expect(files.filter((f) => /berth_os/.test(f.text)).map((f) => f.path)).toEqual(['core/os/sys.ts']);
    expect(files.filter((f) => /berth_sock/.test(f.text)).map((f) => f.path)).toEqual(['frontends/blocking-socket.ts']);
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

  it('flexvolume/ and dvdcli/ import nothing beyond their folder, the admin client, the HTTP/1.1 client and its blocking sockets, the exit helper and the core error/type modules', () => {
    // Each call of these executables is a fresh process: what they import is their cold start.
    const allowed = (folder: string) => (target: string) =>
      target.startsWith(`${folder}/`) ||
      ['frontends/admin/client.ts', 'frontends/http1-client.ts', 'frontends/blocking-socket.ts', 'frontends/process-exit.ts', 'core/errors.ts', 'core/types.ts', 'core/user-input.ts', 'package.json'].includes(target.replace(/\.js$/, '.ts'));
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

  it('an OS helper that one driver alone uses lives with that driver, unless it needs the system-call addon', () => {
    // Such helpers still run commands only through core/os/exec.ts (the rule above); backends/<driver>/
    // is where they live (backends/btrfs/commands.ts). The addon stays reachable from core/os/ only.
    // core/os/loop.ts and fence.ts serve loop alone, but make system calls through the addon.
    const js = (p: string) => p.replace(/\.ts$/, '.js');
    const osImportsOf = (p: string) =>
      (files.find((f) => f.path === p)?.imports ?? []).map((s) => resolved(p, s).replace(/\.js$/, '.ts')).filter((t) => t.startsWith('core/os/'));
    const usesAddon = (p: string, seen = new Set<string>()): boolean =>
      p === 'core/os/sys.ts' || (!seen.has(p) && (seen.add(p), osImportsOf(p).some((t) => usesAddon(t, seen))));
    const bad = files
      .filter((os) => os.path.startsWith('core/os/') && !usesAddon(os.path))
      .flatMap((os) => {
        const users = files.filter((f) => f.path !== os.path && f.imports.some((s) => resolved(f.path, s) === js(os.path))).map((f) => f.path);
        const drivers = new Set(users.filter((p) => p.startsWith('backends/')).map((p) => p.split('/').slice(0, 2).join('/')));
        const elsewhere = users.some((p) => !p.startsWith('backends/'));
        return drivers.size === 1 && !elsewhere ? [`${os.path} is used by ${[...drivers][0]}/ only`] : [];
      });
    expect(bad).toEqual([]);
  });

  it('a driver imports no other driver', () => {
    const bad = files
      .filter((f) => /^backends\/[^/]+\//.test(f.path))
      .flatMap((f) => {
        const own = f.path.split('/').slice(0, 2).join('/') + '/';
        return f.imports.map((s) => resolved(f.path, s)).filter((t) => /^backends\/[^/]+\//.test(t) && !t.startsWith(own)).map((t) => `${f.path} -> ${t}`);
      });
    expect(bad).toEqual([]);
  });

  it('each driver declares every program it runs (its own files and the core/os helpers it calls), and only allowed ones', () => {
    // The registry hands each backend an Exec limited to its driver's `binaries`; this keeps the
    // declaration complete, so a program added to a driver without declaring it fails here, not in
    // production. A core/os helper counts by the functions a driver imports from it (fsUsage from
    // fs.ts runs nothing; makeFilesystem runs mkfs.*), following the calls inside the module and
    // into the core/os modules it imports.
    const byPath = new Map(files.map((f) => [f.path, f]));
    const BIN = /\bbin: '([^']+)'/g;
    /** Top-level declarations of a module: name -> its text. */
    const chunks = (path: string): Map<string, string> => {
      const out = new Map<string, string>();
      const text = byPath.get(path)?.text ?? '';
      const starts = [...text.matchAll(/^(?:export )?(?:async )?(?:function\*? |const |class )(\w+)/gm)];
      starts.forEach((m, i) => out.set(m[1]!, text.slice(m.index, starts[i + 1]?.index ?? text.length)));
      return out;
    };
    /** Names a module imports from core/os modules other than exec.ts: local name -> module path. */
    const osImports = (path: string): Map<string, string> => {
      const out = new Map<string, string>();
      for (const m of (byPath.get(path)?.text ?? '').matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'([^']+)'/g)) {
        const target = resolved(path, m[2]!).replace(/\.js$/, '.ts');
        if (!target.startsWith('core/os/') || target === 'core/os/exec.ts') continue;
        for (const part of m[1]!.split(',').map((x) => x.trim().replace(/^type\s+/, '')).filter(Boolean)) {
          const [orig, local] = part.split(/\s+as\s+/);
          out.set((local ?? orig)!, `${target}#${orig}`);
        }
      }
      return out;
    };
    const binsOf = (ref: string, seen: Set<string>): string[] => {
      if (seen.has(ref)) return [];
      seen.add(ref);
      const [path, name] = ref.split('#') as [string, string];
      const decls = chunks(path);
      const body = decls.get(name) ?? '';
      const called = [...decls.keys()].filter((n) => n !== name && new RegExp(`\\b${n}\\b`).test(body)).map((n) => `${path}#${n}`);
      const imported = [...osImports(path)].filter(([local]) => new RegExp(`\\b${local}\\b`).test(body)).map(([, r]) => r);
      return [...[...body.matchAll(BIN)].map((m) => m[1]!), ...[...called, ...imported].flatMap((r) => binsOf(r, seen))];
    };
    const folders = new Set(files.filter((f) => /^backends\/[^/]+\//.test(f.path)).map((f) => f.path.split('/')[1]!));
    expect([...folders].sort()).toEqual(Object.keys(builtinDrivers).sort());
    for (const [name, driver] of Object.entries(builtinDrivers)) {
      // The driver's own files and the shared backends/*.ts modules they import.
      const own = files.filter((f) => f.path.startsWith(`backends/${name}/`)).map((f) => f.path);
      const shared = own.flatMap((p) => byPath.get(p)!.imports.map((s) => resolved(p, s).replace(/\.js$/, '.ts'))).filter((t) => /^backends\/[^/]+\.ts$/.test(t));
      const mine = [...new Set([...own, ...shared])];
      const runs = new Set([
        ...mine.flatMap((p) => [...byPath.get(p)!.text.matchAll(BIN)].map((m) => m[1]!)),
        ...mine.flatMap((p) => [...osImports(p).values()].flatMap((r) => binsOf(r, new Set()))),
      ]);
      expect([...runs].filter((b) => !driver.binaries.includes(b)), `${name}: programs run but not declared`).toEqual([]);
      expect(driver.binaries.filter((b) => !runs.has(b)), `${name}: declared but never run`).toEqual([]);
      expect(driver.binaries.filter((b) => !(ALLOWED_BINARIES as readonly string[]).includes(b)), `${name}: declared but not allowed`).toEqual([]);
    }
  });

  it('cli talks to the daemon through the admin client (only daemon.ts composes the core)', () => {
    const bad = files
      // The composition roots: the daemon's (daemon.ts, serve) and the fence agent's (fence-agent-main.ts).
      .filter((f) => f.path.startsWith('cli/') && f.path !== 'cli/daemon.ts' && f.path !== 'cli/fence-agent-main.ts' && !f.path.startsWith('cli/commands/serve'))
      .flatMap((f) => f.imports.filter((s) => /\/(core\/(store|os|volume-service)|backends\/)/.test(s)).map((s) => `${f.path} -> ${s}`));
    expect(bad).toEqual([]);
  });
});
