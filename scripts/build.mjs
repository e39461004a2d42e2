// Bundles the executables with esbuild (no type checking here: `npm run typecheck`):
// dist/berth.js (the admin CLI, and the daemon's entry: dist/serve-main.mjs and its chunks),
// dist/dvdcli.cjs and dist/flexvolume.cjs.
// Every executable's client path is bundled whole, so a cold start loads one file instead of
// resolving and compiling a tree of package modules (yargs alone is ~40 of them). Only the
// daemon's own dependencies stay in node_modules (better-sqlite3 is native; gRPC, pino and
// friends load files by path at run time), and `berth serve` reaches them through a dynamic
// import, so no client command pays for them.
import { build } from 'esbuild';
import { chmod, cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';

const pkg = JSON.parse(await readFile('package.json', 'utf8'));
/**
 * The packages the `berth` client commands use, bundled into dist/ like the frontends' code
 * (yargs into the client; yaml into the daemon, which reads its config with it). The client
 * loads yaml, cli-progress and cli-table3 from node_modules, only for their own output.
 */
const CLIENT_PACKAGES = ['yargs', 'cli-table3', 'cli-progress', 'yaml'];
const daemonPackages = Object.keys(pkg.dependencies).filter((p) => !CLIENT_PACKAGES.includes(p));

/**
 * yargs finds its package root and its message translations relative to its own file
 * (import.meta.url): bundled, that is dist/berth.js, and the paths would point outside the
 * install. They are pointed at dist/ instead: the package root is found from there as before,
 * and the translations are copied to dist/locales below. Its two assertions stop loading
 * node:assert. The build fails if yargs changes.
 */
const yargsShim = {
  name: 'yargs-paths',
  setup(b) {
    b.onLoad({ filter: /[\\/]yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/ }, async (args) => {
      let text = await readFile(args.path, 'utf8');
      const edits = [
        ["const mainFilename = __dirname.substring(0, __dirname.lastIndexOf('node_modules'));", 'const mainFilename = dirname(__dirname);'],
        ["directory: resolve(__dirname, '../../../locales'),", "directory: resolve(__dirname, '../locales'),"],
        // node:assert loads its own module tree (colors, the assertion error, a call tracker)
        // for two checks of yargs' own programming: plain functions do them.
        [
          "import { notStrictEqual, strictEqual } from 'assert'",
          "const notStrictEqual = (a, b, m) => { if (Object.is(a, b)) throw new Error(m ?? `yargs: expected a value other than ${String(b)}`); };\n" +
            "const strictEqual = (a, b, m) => { if (!Object.is(a, b)) throw new Error(m ?? `yargs: expected ${String(b)}, got ${String(a)}`); };",
        ],
      ];
      for (const [from, to] of edits) {
        if (!text.includes(from)) throw new Error(`build: yargs' ${args.path} changed; cannot relocate: ${from}`);
        text = text.replace(from, to);
      }
      return { contents: text, loader: 'js' };
    });
  },
};

/**
 * string-width (yargs', cliui's and wrap-ansi's copies) builds Unicode machinery when it is
 * loaded: an Intl.Segmenter and regular expressions over Unicode properties, \p{RGI_Emoji}
 * alone being twice a bare `node -e 0` in instructions (ICU builds its set of strings). Only
 * --help and usage errors measure widths, so each is built on first use instead. The build
 * fails if a string-width keeps one eager.
 */
const LAZY_HELPER = `function berthLazy(make) {
  let v;
  const get = () => (v ??= make());
  return {
    segment: (s) => get().segment(s),
    test: (s) => get().test(s),
    exec: (s) => get().exec(s),
    [Symbol.match]: (s) => get()[Symbol.match](s),
    [Symbol.matchAll]: (s) => get()[Symbol.matchAll](s),
    [Symbol.replace]: (s, r) => get()[Symbol.replace](s, r),
    [Symbol.search]: (s) => get()[Symbol.search](s),
    [Symbol.split]: (s, l) => get()[Symbol.split](s, l),
  };
}
`;
const lazyUnicode = {
  name: 'lazy-unicode',
  setup(b) {
    b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      // string-width 4 (cli-table3's) has no Unicode data to defer, but runs the whole emoji
      // regexp over every cell: printable ASCII is measured by its length instead, as its own
      // algorithm would (no escape, emoji or wide character can be in it).
      const scan = "\tstring = stripAnsi(string);\n";
      if (text.includes("string = string.replace(emojiRegex(), '  ');")) {
        if (!text.includes(scan)) throw new Error(`build: ${args.path} changed; cannot add its ASCII fast path`);
        return { contents: text.replace(scan, `\tif (/^[\\x20-\\x7E]*$/.test(string)) {\n\t\treturn string.length;\n\t}\n\n${scan}`), loader: 'js' };
      }
      let lazy = text
        .replace(/^const (\w+) = (new Intl\.Segmenter\(\));$/m, 'const $1 = berthLazy(() => $2);')
        .replace(/^const (\w+) = (\/.*\\p\{.*\/[a-z]*);$/gm, 'const $1 = berthLazy(() => $2);');
      if (lazy === text) return undefined; // an older string-width: nothing eager
      if (/^const \w+ = (new Intl\.|\/.*\\p\{)/m.test(lazy)) throw new Error(`build: ${args.path} changed; cannot make its Unicode data lazy`);
      lazy = `${LAZY_HELPER}${lazy}`;
      return { contents: lazy, loader: 'js' };
    });
  },
};

const common = { bundle: true, platform: 'node', target: 'node20', sourcemap: 'linked', logLevel: 'warning', plugins: [yargsShim, lazyUnicode] };
const shebang = '#!/usr/bin/env node';

/**
 * The `berth` client reaches the daemon's code through two dynamic imports, each of a module
 * that is a composition root of its own: `berth serve` (cli/serve-main.ts) and `berth
 * fence-agent` (cli/fence-agent-main.ts). In the client bundle they stay imports of the
 * daemon bundle's files (below), loaded only by those two commands.
 */
const DAEMON_ENTRIES = { 'serve-main': 'cli/serve-main.ts', 'fence-agent-main': 'cli/fence-agent-main.ts' };
const daemonSide = {
  name: 'daemon-side',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/(serve-main|fence-agent-main)\.js$/ }, (args) =>
      args.kind === 'dynamic-import' ? { path: `./${basename(args.path, '.js')}.mjs`, external: true } : undefined);
  },
};

// import.meta.url in a CommonJS bundle: the file's URL, made on first use (a getter), since
// loading node:url and building the URL costs every process start ~0.8 ms and most never ask.
const CJS_IMPORT_META_URL = '__berthMeta.url';
const CJS_IMPORT_META_URL_BANNER = 'var __berthMeta = { get url() { return require("node:url").pathToFileURL(__filename).href; } };';

const entries = [
  // The `berth` client: one CommonJS file. CommonJS because Node's ESM loader costs a client
  // command about a tenth of its start: the loader itself, and the ESM facade of each builtin
  // it imports (node:fs's reads every export, fs.promises included, which loads readline,
  // streams and watchers). dist/package.json (written below) makes dist/*.js CommonJS. Its
  // packages are bundled but for yaml, cli-progress and cli-table3, which only `--output yaml`,
  // progress bars and tables of more than ASCII load (from node_modules, like the daemon's).
  {
    in: 'cli/berth.ts',
    out: 'dist/berth.js',
    options: {
      format: 'cjs',
      external: [...daemonPackages, 'yaml', 'cli-progress', 'cli-table3'],
      plugins: [...common.plugins, daemonSide],
      define: { 'import.meta.url': CJS_IMPORT_META_URL, 'import.meta.dirname': '__dirname' },
      banner: { js: `${shebang}\n"use strict";\n${CJS_IMPORT_META_URL_BANNER}` },
    },
  },
  // The daemon: ESM, split into chunks shared by its two entries. Chunks sit in dist/ itself
  // so paths relative to the bundle (dist/proto/csi.proto, the addon) hold for them too; their
  // names carry a content hash, so a rebuild never changes a chunk a running daemon still has
  // to load. Bundled CommonJS packages (yaml) require() Node's builtins: the output gets a require.
  {
    in: DAEMON_ENTRIES,
    out: 'dist',
    options: {
      format: 'esm',
      external: daemonPackages,
      splitting: true,
      chunkNames: '[name]-[hash]',
      outExtension: { '.js': '.mjs' },
      banner: { js: `import { createRequire as __berthCreateRequire } from 'node:module';\nconst require = __berthCreateRequire(import.meta.url);` },
    },
  },
  // The per-call executables use no package at all: one CommonJS file each. CommonJS because
  // Node's ESM loader costs a fifth of a bare `node -e 0` more, and because the FlexVolume
  // driver is installed without an extension or a package.json, where Node would first try
  // to parse ESM source as CommonJS. import.meta.url becomes the file's URL (one file: the image
  // build copies scripts/build.mjs alone).
  ...['dvdcli', 'flexvolume'].map((name) => ({
    in: `frontends/${name}/main.ts`,
    out: `dist/${name}.cjs`,
    options: {
      format: 'cjs',
      // The banner's "use strict" keeps the file strict: esbuild's own comes after the banner.
      define: { 'import.meta.url': CJS_IMPORT_META_URL, 'import.meta.dirname': '__dirname' },
      banner: { js: `${shebang}\n"use strict";\n${CJS_IMPORT_META_URL_BANNER}` },
    },
  })),
];

await mkdir('dist', { recursive: true });
await writeFile('dist/package.json', `${JSON.stringify({ type: 'commonjs' })}\n`);
await Promise.all(
  entries
    .filter((e) => (typeof e.in === 'string' ? [e.in] : Object.values(e.in)).every((f) => existsSync(f)))
    .map(async (e) => {
      const output = typeof e.in === 'string' ? { entryPoints: [e.in], outfile: e.out } : { entryPoints: e.in, outdir: e.out };
      await build({ ...common, ...output, ...e.options });
      if (typeof e.in === 'string') await chmod(e.out, 0o755);
    }),
);

// The addons (native/: the system calls core/os/sys.ts loads, and the socket calls of the
// per-call executables, frontends/blocking-socket.ts) are compiled by `npm ci`; rebuild them here
// when their sources are newer, so `npm test` never runs a stale one. (The image build copies
// scripts/build.mjs with the sources and the already built addons.)
const ADDON = 'build/Release/berth_os.node';
const SOCK_ADDON = 'build/Release/berth_sock.node';
const addonSources = ['binding.gyp', 'native/addon.h', 'native/addon.c', 'native/args.c', 'native/settle.c', 'native/ops.c', 'native/ops.h', 'native/sock.c'];
const addonAge = Math.min(...[ADDON, SOCK_ADDON].map((f) => (existsSync(f) ? statSync(f).mtimeMs : -1)));
if (addonSources.some((f) => existsSync(f) && statSync(f).mtimeMs > addonAge)) {
  const r = spawnSync('npm', ['run', '--silent', 'native'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`building ${ADDON} and ${SOCK_ADDON} failed (npm run native exited ${r.status})`);
}

// The CSI frontend loads its proto at run time relative to the bundle (frontends/csi/proto.ts).
await cp('frontends/csi/proto/csi.proto', 'dist/proto/csi.proto');
// yargs' translations of its own messages (help headings, usage errors), read by locale.
await cp('node_modules/yargs/locales', 'dist/locales', { recursive: true });
