import { readdir, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { linkOrCopy } from "../../link-or-copy.js";
import { makeDir } from "../../make-dir.js";

/**
 * Puts an input where the container can read it by a bare name: `<data folder>/temp/<name>`
 * (heygem-contract.md, "POST /easy/submit": host paths mean nothing inside the container). A hard
 * link costs nothing on the same file system; across two, the file is copied.
 */
export async function stageInput(source: string, tempDir: string, name: string): Promise<void> {
  await makeDir(tempDir);
  await linkOrCopy(source, join(tempDir, name));
}

/**
 * The host path of a finished task's MP4. `result` is relative to /code/data/temp ("/<code>-r.mp4");
 * anything that would lead out of the temp folder falls back to the documented name.
 */
export function resultPath(tempDir: string, code: string, result: string): string {
  const fallback = join(tempDir, `${code}-r.mp4`);
  const relative = posix
    .normalize(result.replace(/\\/g, "/").replace(/^\/code\/data\/temp\//, ""))
    .replace(/^\/+/, "");
  if (relative === "" || relative === "." || relative.startsWith("..")) return fallback;
  return join(tempDir, relative);
}

/** Whether `path` is a non-empty file. */
export async function isNonEmptyFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    return info.isFile() && info.size > 0;
  } catch {
    return false;
  }
}

/**
 * Removes what one task left in the temp folder: the inputs the agent placed, the result, and the
 * container's own intermediates, all named after the task's code. Codes are `mh` plus 32 random hex
 * digits, so no other task's name can start with this one.
 */
export async function removeTaskFiles(tempDir: string, code: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tempDir);
  } catch {
    return;
  }
  await Promise.all(
    names
      .filter((name) => name.startsWith(code))
      .map((name) => rm(join(tempDir, name), { recursive: true, force: true })),
  );
}
