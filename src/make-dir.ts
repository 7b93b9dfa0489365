import { mkdirSync, statSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * `mkdir -p`, for every folder the program makes. Node's own (`mkdir(path, { recursive: true })`)
 * never returns where a folder that exists refuses children with ENOENT rather than an error of
 * its own: under /proc or /sys, say, its native walk creates the parent (EEXIST), retries the
 * child (ENOENT) and spins there for ever, 100 % of a core and no output (nodejs/node#27198 is the
 * same loop on Windows). A mistyped `--data-dir /proc/…` hung the gateway's start like that.
 * Here a child that is still not found once its parent exists is the error it is.
 */
export async function makeDir(path: string): Promise<void> {
  try {
    await mkdir(path);
    return;
  } catch (err) {
    const code = errorCode(err);
    if (code === "EEXIST") {
      // As `mkdir -p`: a folder already there is fine, a file by that name is not.
      if ((await stat(path)).isDirectory()) return;
      throw err;
    }
    const parent = dirname(path);
    if (code !== "ENOENT" || parent === path) throw err;
    await makeDir(parent);
  }
  // The parent is there now: a second ENOENT is this file system's refusal, not a missing parent.
  await mkdir(path).catch(async (err: unknown) => {
    if (errorCode(err) === "EEXIST" && (await stat(path)).isDirectory()) return;
    throw err;
  });
}

/** `makeDir`, blocking: for the few places that run before anything else (opening the store). */
export function makeDirSync(path: string): void {
  try {
    mkdirSync(path);
    return;
  } catch (err) {
    const code = errorCode(err);
    if (code === "EEXIST") {
      if (statSync(path).isDirectory()) return;
      throw err;
    }
    const parent = dirname(path);
    if (code !== "ENOENT" || parent === path) throw err;
    makeDirSync(parent);
  }
  try {
    mkdirSync(path);
  } catch (err) {
    if (errorCode(err) === "EEXIST" && statSync(path).isDirectory()) return;
    throw err;
  }
}

function errorCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}
