// Runs the suites that need the berth image (IMAGE_SUITES) after every other file, in
// vitest's own order otherwise: the global setup builds the image in the background, and on a
// 2-core machine vitest runs one file at a time, so a suite early in the order would wait
// for the build with nothing else running (test/helpers/image-build.ts).
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** The suites that need the berth image, relative to the repository root. */
export const IMAGE_SUITES: readonly string[] = ['test/integration/docker-plugin.test.ts'];

export default class ImageLastSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const last = (f: TestSpecification) => IMAGE_SUITES.includes(relative(f.project.config.root, f.moduleId));
    return [...sorted.filter((f) => !last(f)), ...sorted.filter(last)];
  }
}
