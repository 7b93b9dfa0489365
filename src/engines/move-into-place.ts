import { randomUUID } from "node:crypto";
import { copyFile, rename } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { removeFile } from "../remove-file.js";

/**
 * Moves a finished file to `to` so that `to` appears in one step, whole or not at all, as the
 * engine contract wants of `outputPath`: a rename on one file system; across two (a work dir on a
 * scratch disk, a HeyGem data folder on another) a copy next to `to`, then renamed into place.
 * After a copy `from` is still there, for the caller to remove with the rest of its files.
 */
export async function moveIntoPlace(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
  }
  const staged = join(dirname(to), `.${basename(to)}.${randomUUID()}.partial`);
  try {
    await copyFile(from, staged);
    await rename(staged, to);
  } finally {
    await removeFile(staged);
  }
}
