import { type AppError, InsufficientStorageError, StoreUnavailableError } from "../errors.js";

/** No space left: the operator must free some, and the client may try again later. */
const FULL = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL"]);
/** The data dir vanished, went read-only or fails: nothing can be kept until an operator acts. */
const UNAVAILABLE = new Set(["EROFS", "EACCES", "EPERM", "EIO", "ENOENT", "ENOTDIR", "ESTALE"]);
const SQLITE_UNAVAILABLE = ["SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_CORRUPT"];

/**
 * What a failed write of the store or the blobs means for a client: 507 when the disk is full,
 * 503 when the data dir cannot be written at all; undefined for anything else (a bug: 500).
 * The system's message names files, so it goes to the log only, never into the answer.
 */
export function storageFault(err: unknown): AppError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  if (FULL.has(code)) {
    return new InsufficientStorageError("the disk under the data dir is full; try again once space is freed");
  }
  if (UNAVAILABLE.has(code) || SQLITE_UNAVAILABLE.some((prefix) => code.startsWith(prefix))) {
    return new StoreUnavailableError(
      `the data dir cannot be written (${code}); nothing was stored, try again later`,
    );
  }
  return undefined;
}
