/**
 * The berth image for the suites that need it (IMAGE_SUITES in sequencer.ts: the Docker managed plugin),
 * held while they use it. The build itself, its lock and why it runs in the background from
 * the global setup: image-build.ts.
 *
 * @example
 *   const held = await ensureBerthImage(); // held.image: "berth-test/berth:<hash>"
 *   try { ...docker plugin create from held.image... } finally { await held.release(); }
 */
import { readFile } from 'node:fs/promises';
import { inject } from 'vitest';
import { berthImageKey, buildUnderLock, BUILD_TIMEOUT_MS, IMAGE_LOCK, IMAGE_REPO, imageExists } from './image-build.js';
import { acquireLock } from './machine-lock.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by the global setup when it builds the image in the background: where it reports a failure. */
    berthImageBuild: { readonly statusFile: string } | undefined;
  }
}

export interface HeldImage {
  /** "berth-test/berth:<key>" */
  readonly image: string;
  /** Lets the image go (other runs may then replace it); call once the plugin is created. */
  release(): Promise<void>;
}

/**
 * The image of this tree, held (shared lock) until release(): waits for a build another run
 * or this run's global setup has under way, builds it when nobody does. Fails at once, with
 * its log, when this run's background build failed.
 */
export async function ensureBerthImage(): Promise<HeldImage> {
  const key = await berthImageKey();
  const image = `${IMAGE_REPO}:${key}`;
  const background = inject('berthImageBuild');
  for (let attempt = 0; ; attempt++) {
    const shared = await acquireLock(IMAGE_LOCK, BUILD_TIMEOUT_MS, { shared: true });
    if (await imageExists(image)) return { image, release: () => shared.release() };
    await shared.release();
    if (background) {
      const status = await readFile(background.statusFile, 'utf8').catch(() => null);
      const failed = status ? (JSON.parse(status) as { key: string; error: string }) : null;
      if (failed?.key === key) throw new Error(`the background build of ${image} (global setup) failed: ${failed.error}`);
    }
    if (attempt > 0) throw new Error(`${image} is still missing after a build that succeeded`);
    await buildUnderLock(image, key).done;
  }
}
