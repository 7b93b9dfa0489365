import { run } from "./processes.js";

/** What a machine without the seed clients' libraries needs; printed once by test/global-setup.ts. */
export const PYTHON_HINT =
  "seed-client tests skipped: no python3 with requests, aiohttp and aiofiles " +
  "(apt-get install python3 python3-requests python3-aiohttp python3-aiofiles)";

/**
 * A Python 3 that has the seed clients' libraries. Debian's python3-requests, python3-aiohttp and
 * python3-aiofiles are seen only by Debian's own interpreter, while a developer's `python3` may be
 * another one (pyenv): try both. Without one the seed-client tests are skipped, except under CI,
 * whose script installs them, so a skip there would hide a broken install.
 */
export async function locatePython(): Promise<string | undefined> {
  for (const candidate of ["/usr/bin/python3", "python3"]) {
    const probe = await run(candidate, ["-c", "import requests, aiohttp, aiofiles"]).catch(() => undefined);
    if (probe?.code === 0) return candidate;
  }
  if (process.env.CI) throw new Error(`${PYTHON_HINT}; .ci/run should have installed them`);
  return undefined;
}

/** Resolved once per test file that imports it. */
export const python: string | undefined = await locatePython();

/** The interpreter, inside tests that `skipIf(python === undefined)`. */
export function requirePython(): string {
  if (python === undefined) throw new Error(PYTHON_HINT);
  return python;
}
