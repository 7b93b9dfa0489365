import { unlink } from "node:fs/promises";

/**
 * `rm -f` for one file: removes it, and a file already gone is no error. Node's own
 * `rm(path, { force: true })` looks at the path twice (lstat) before it unlinks it, three trips
 * through the thread pool where this makes one; on a small VM each trip costs more CPU than the
 * syscall itself, and the intake removes several temp files per task (bench, "Intake").
 */
export async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
