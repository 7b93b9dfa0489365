import { accessSync, constants, statfsSync, statSync } from "node:fs";
import { InsufficientStorageError, StoreUnavailableError } from "../errors.js";

/**
 * Whether the data dir can still keep what the gateway is asked to change. SQLite keeps writing
 * to a database file that was deleted under it (its descriptor stays valid), so a removed data
 * dir would swallow every new task without an error and lose it on restart; a read-only one
 * fails deep inside a write. Checked before every change: a few syscalls, no query (issue 9: "a
 * data dir that turns read-only or vanishes at run time gives 503"). The calls are synchronous on
 * purpose: a stat of a local file takes microseconds, while the thread pool's round trip for each
 * cost the intake several per cent of its throughput (bench, "Intake").
 */
export class DataDirHealth {
  private constructor(
    private readonly dataDir: string,
    /** The SQLite file, or with PostgreSQL the data dir itself (it holds the blobs). */
    private readonly watched: string,
    private readonly identity: { dev: number; ino: number },
    private readonly minFreeBytes: number,
  ) {}

  /** Remembers which database file (or data dir) is the open one, to tell it from a replacement later. */
  static async open(dataDir: string, watched: string, minFreeBytes: number): Promise<DataDirHealth> {
    const { dev, ino } = statSync(watched);
    return new DataDirHealth(dataDir, watched, { dev, ino }, minFreeBytes);
  }

  /** Throws StoreUnavailableError (503) unless the open store is still there and writable. */
  async assertWritable(): Promise<void> {
    const now = statSync(this.watched, { throwIfNoEntry: false });
    if (!now || now.dev !== this.identity.dev || now.ino !== this.identity.ino) {
      throw new StoreUnavailableError(
        "the gateway's data dir is gone or was replaced while it ran; nothing was stored. " +
          "Restore the data dir and restart the gateway",
      );
    }
    // Root passes every permission check, but not a read-only file system: access reports EROFS.
    let denied: string | undefined;
    try {
      accessSync(this.dataDir, constants.W_OK);
    } catch (err) {
      denied = (err as NodeJS.ErrnoException).code ?? "unknown error";
    }
    if (denied) {
      throw new StoreUnavailableError(
        `the gateway's data dir cannot be written (${denied}); nothing was stored`,
      );
    }
  }

  /** Throws InsufficientStorageError (507) when storing `bytes` more would leave less than the floor. */
  async assertRoomFor(bytes: number): Promise<void> {
    if (this.minFreeBytes === 0) return;
    const fs = statfsSync(this.dataDir);
    const free = fs.bavail * fs.bsize;
    if (free - bytes < this.minFreeBytes) {
      throw new InsufficientStorageError(
        `the gateway has ${mib(free)} MiB of disk free and keeps at least ${mib(this.minFreeBytes)} MiB ` +
          "free (--min-free-disk); uploads are refused until space is freed",
      );
    }
  }
}

function mib(bytes: number): number {
  return Math.floor(bytes / (1024 * 1024));
}
