import { run } from "./processes.js";

/**
 * A Python 3 that has the seed clients' libraries. CI installs Debian's python3-requests,
 * python3-aiohttp and python3-aiofiles, which only Debian's own interpreter sees, while a
 * developer's `python3` may be another one (pyenv): try both.
 */
export async function findPython(): Promise<string> {
  for (const candidate of ["/usr/bin/python3", "python3"]) {
    const probe = await run(candidate, ["-c", "import requests, aiohttp, aiofiles"]).catch(() => undefined);
    if (probe?.code === 0) return candidate;
  }
  throw new Error(
    "no python3 with requests, aiohttp and aiofiles; install python3-requests python3-aiohttp python3-aiofiles",
  );
}
