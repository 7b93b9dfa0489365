import { copyFile, link } from "node:fs/promises";
import { removeFile } from "./remove-file.js";

/**
 * Puts `source` at `dest`, replacing what is there: a hard link, which costs nothing on the same
 * file system, or a copy where no link can be made (another file system, one without hard links, a
 * file at its link limit). The blob caches, HeyGem's and Fish Speech's shared folders and a job's
 * work dir all place their inputs this way.
 */
export async function linkOrCopy(source: string, dest: string): Promise<void> {
  await removeFile(dest);
  try {
    await link(source, dest);
  } catch {
    await copyFile(source, dest);
  }
}
