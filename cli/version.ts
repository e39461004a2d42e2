/** The berth version, from package.json (bundled into dist/berth.js by esbuild). */
import pkg from '../package.json' with { type: 'json' };

export const BERTH_VERSION: string = pkg.version;
