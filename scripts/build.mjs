// Bundles the executables with esbuild (no type checking here: `npm run typecheck`).
// The daemon/CLI keeps node_modules external (better-sqlite3 is native); the per-call
// executables (dvdcli, flexvolume) are bundled whole so their cold start loads one file.
import { build } from 'esbuild';
import { chmod, cp } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', sourcemap: 'linked', logLevel: 'warning' };
const banner = { js: '#!/usr/bin/env node' };

const entries = [
  // Split: `berth serve` loads the daemon (gRPC, SQLite, zod, prom-client) with a dynamic
  // import, so client commands start in about half the time. Chunks sit in dist/ itself so
  // paths relative to the bundle (dist/proto/csi.proto) hold for them too; their names carry a
  // content hash, so a rebuild never changes a chunk a running daemon still has to load.
  { in: 'cli/berth.ts', out: 'dist/berth.js', packages: 'external', split: true },
  { in: 'frontends/dvdcli/main.ts', out: 'dist/dvdcli.js' },
  { in: 'frontends/flexvolume/main.ts', out: 'dist/flexvolume.js' },
];

import { existsSync } from 'node:fs';
await Promise.all(
  entries
    .filter((e) => existsSync(e.in))
    .map(async (e) => {
      const output = e.split
        ? { entryPoints: { [basename(e.out, '.js')]: e.in }, outdir: dirname(e.out), splitting: true, chunkNames: '[name]-[hash]' }
        : { entryPoints: [e.in], outfile: e.out };
      await build({ ...common, ...output, banner, ...(e.packages ? { packages: e.packages } : {}) });
      await chmod(e.out, 0o755);
    }),
);

// The CSI frontend loads its proto at run time relative to the bundle (frontends/csi/proto.ts).
await cp('frontends/csi/proto/csi.proto', 'dist/proto/csi.proto');
