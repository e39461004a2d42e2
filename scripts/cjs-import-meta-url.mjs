// Injected by build.mjs into the CommonJS bundles, where esbuild leaves import.meta empty:
// `import.meta.url` is defined as this, the bundle's own file URL.
import { pathToFileURL } from 'node:url';

export const importMetaUrl = pathToFileURL(__filename).href;
