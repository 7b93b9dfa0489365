import { findBinary, npmPackagePath, parseVersionBanner } from "../src/media/ffmpeg-binaries.js";
import { CHROMIUM_HINT, chromiumPath } from "./helpers/browser.js";
import { dropAbandonedDatabases, POSTGRES_HINT, postgresAvailable } from "./helpers/postgres.js";
import { run } from "./helpers/processes.js";
import { PYTHON_HINT, python } from "./helpers/python.js";

/**
 * Says once, at the top of a run, what this machine lacks and what the tests used for it, so a
 * skip never goes unnoticed (issue 8). Skipping itself is decided in each test file.
 */
export default async function setup(): Promise<void> {
  if (python === undefined) say(PYTHON_HINT);
  if (chromiumPath === undefined) say(CHROMIUM_HINT);
  if (postgresAvailable) await dropAbandonedDatabases();
  else say(POSTGRES_HINT);

  const chosen = await findBinary("ffmpeg").catch(() => undefined);
  const bundled = (() => {
    try {
      return npmPackagePath("ffmpeg");
    } catch {
      return undefined;
    }
  })();
  const version = async (path: string | undefined) =>
    path ? parseVersionBanner((await run(path, ["-version"]).catch(() => undefined))?.stdout ?? "") : "none";
  if (chosen && bundled && chosen !== bundled) {
    say(
      `media and engine tests run under ffmpeg ${await version(chosen)} and again under the bundled ${await version(bundled)}`,
    );
  } else {
    say(
      `media and engine tests run under one ffmpeg only (${await version(chosen)}); ` +
        "install Debian's (apt-get install ffmpeg) to run them under both",
    );
  }
}

/** Straight to stderr: vitest shows it above the results. */
function say(line: string): void {
  process.stderr.write(`${line}\n`);
}
