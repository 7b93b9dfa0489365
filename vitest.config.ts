import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";
import { findBinary, npmPackagePath } from "./src/media/ffmpeg-binaries.js";

/**
 * The media and engine tests run once under the ffmpeg the code picks by default and again under
 * the other build when the machine has both (a distribution's on PATH and the npm package's static
 * one): results must not depend on which is installed (issue 8). `.ci/run` installs Debian's.
 */
async function otherFfmpeg(): Promise<{ ffmpeg: string; ffprobe: string } | undefined> {
  try {
    const chosen = await findBinary("ffmpeg");
    const bundled = { ffmpeg: npmPackagePath("ffmpeg"), ffprobe: npmPackagePath("ffprobe") };
    return chosen === bundled.ffmpeg ? undefined : bundled;
  } catch {
    return undefined;
  }
}

const other = await otherFfmpeg();
const projects: TestProjectInlineConfiguration[] = [
  {
    extends: true,
    // Says once what the machine lacks and which ffmpeg builds the run uses.
    test: { name: "all", include: ["test/**/*.test.ts"], globalSetup: ["test/global-setup.ts"] },
  },
];
if (other) {
  projects.push({
    extends: true,
    test: {
      name: "media, bundled ffmpeg",
      include: ["test/media/**/*.test.ts", "test/engines/**/*.test.ts"],
      env: { FFMPEG_PATH: other.ffmpeg, FFPROBE_PATH: other.ffprobe },
    },
  });
}

export default defineConfig({
  test: {
    // Tests start real gateways, workers and ffmpeg runs; a 2-core CI box needs room.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    projects,
  },
});
