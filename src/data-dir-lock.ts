import { readFile, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { StartupError } from "./errors.js";
import { makeDir } from "./make-dir.js";
import { removeFile } from "./remove-file.js";

export interface DataDirLock {
  release(): Promise<void>;
}

const LOCK_FILE = ".lock";
const OWNER_FILE = ".lock-owner";

/**
 * One process per data dir: two gateways (or two workers) on one folder would each believe their
 * view of the store and the blobs is the whole truth (issue 9). The lock is SQLite's own exclusive
 * lock on a small file, held for the life of the process: the operating system drops it when the
 * process dies, however it dies, so there is never a stale lock to clean up by hand.
 */
export async function lockDataDir(dataDir: string, role: "gateway" | "worker"): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_FILE);
  let db: SQLite.Database;
  try {
    db = new SQLite(path, { timeout: 0 });
    db.pragma("locking_mode = EXCLUSIVE");
    // Writing takes the exclusive lock; EXCLUSIVE mode keeps it until the connection closes.
    db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER); DELETE FROM holder;");
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "SQLITE_BUSY") {
      const owner = await readFile(join(dataDir, OWNER_FILE), "utf8").catch(() => "");
      throw new StartupError(
        `${dataDir} is in use by another ${owner.trim() || "multi-heygem process"}; ` +
          `give this ${role} its own --data-dir`,
      );
    }
    throw new StartupError(
      `${dataDir}: cannot lock the data dir (${describe(err)}); check that it is writable`,
      {
        cause: err,
      },
    );
  }
  const owner = join(dataDir, OWNER_FILE);
  await writeFile(owner, `${role} (pid ${process.pid} on ${hostname()})\n`).catch(() => undefined);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await removeFile(owner);
      db.close();
    },
  };
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : err instanceof Error ? err.message : String(err);
}

/**
 * Runs `start` holding the data dir's lock: the lock is released when `start` fails, and when the
 * handle it returns is closed (after the handle's own close, so nothing else writes there by then).
 */
export async function whileLocked<H extends { close(): Promise<void> }>(
  dataDir: string,
  role: "gateway" | "worker",
  start: () => Promise<H>,
): Promise<H> {
  // Any path may be given (a mount that is not there, a typo): one line naming the flag, not a stack.
  await makeDir(dataDir).catch((err: unknown) => {
    throw new StartupError(`${dataDir}: cannot make the data dir (${describe(err)}); check --data-dir`, {
      cause: err,
    });
  });
  const lock = await lockDataDir(dataDir, role);
  try {
    const handle = await start();
    return {
      ...handle,
      close: async () => {
        await handle.close();
        await lock.release();
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
