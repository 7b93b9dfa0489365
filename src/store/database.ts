import { readdir, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, type SqliteDatabase, SqliteDialect, type SqliteStatement } from "kysely";
import { BoundedMap } from "../bounded-map.js";
import { StartupError } from "../errors.js";
import { makeDirSync } from "../make-dir.js";
import { WithoutRowLocks } from "./dialect.js";
import { migrateToLatest } from "./migrations.js";
import type { Database } from "./schema.js";

/**
 * Opens (creating if needed) the SQLite store and brings its schema up to date.
 * WAL lets readers (the API) go on while the dispatcher writes; `synchronous=NORMAL` under WAL
 * still survives a process crash (only an OS crash can lose the last commits).
 */
export async function openSqlite(file: string): Promise<Kysely<Database>> {
  makeDirSync(dirname(file));
  let sqlite: SQLite.Database;
  try {
    sqlite = new SQLite(file);
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("foreign_keys = ON");
    sqlite.pragma("busy_timeout = 5000");
  } catch (err) {
    throw unusableStore(file, err);
  }
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
    plugins: [new WithoutRowLocks()],
  });
  const { error, results } = await migrateToLatest(db);
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    const code = (error as { code?: unknown } | undefined)?.code;
    if (typeof code === "string" && code.startsWith("SQLITE_")) throw unusableStore(file, error);
    throw new Error(`store migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  return db;
}

/** SQLite's verdict on a store it cannot use, as one line that says what to do; nothing was written. */
function unusableStore(file: string, err: unknown): StartupError {
  const code = String((err as { code?: unknown }).code ?? "");
  const name = basename(file);
  if (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")) {
    return new StartupError(
      `${file} is not a readable SQLite database (${code}): restore it from a backup, or move it away ` +
        `to start with an empty store; ${name} was left as it is`,
      { cause: err },
    );
  }
  if (
    code.startsWith("SQLITE_READONLY") ||
    code.startsWith("SQLITE_CANTOPEN") ||
    code.startsWith("SQLITE_IOERR")
  ) {
    return new StartupError(
      `${file} cannot be opened for writing (${code}): check the data dir's permissions`,
      {
        cause: err,
      },
    );
  }
  return new StartupError(`${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/**
 * A 0-byte store beside blobs means the store was lost (a truncating copy, a full disk): SQLite
 * would take it for a new, empty database and every task would be silently forgotten (issue 9).
 */
export async function assertStoreNotLost(file: string, blobsDir: string): Promise<void> {
  const size = await stat(file).then(
    (s) => s.size,
    () => undefined,
  );
  if (size !== 0) return;
  const blobs = (await readdir(blobsDir).catch(() => [] as string[])).filter(
    (n) => n !== ".tmp" && n !== ".trash",
  );
  if (blobs.length === 0) return;
  throw new StartupError(
    `${file} is empty but ${blobsDir} holds files: the store was lost or truncated. Restore it from a ` +
      "backup; to start afresh on purpose, move the data dir away. Nothing was changed",
  );
}

const CACHED_STATEMENTS = 256;

/**
 * Kysely prepares every query afresh, and preparing costs more than running a keyed lookup
 * (half the time of `GET /tasks/{id}`, measured in bench/). The gateway sends a small, fixed set
 * of SQL texts, so their prepared statements are kept and reused. Safe because better-sqlite3 is
 * synchronous: a statement is never in use twice at once.
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new BoundedMap<string, SqliteStatement>(CACHED_STATEMENTS);
  return {
    close: () => sqlite.close(),
    prepare: (sql: string) => {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = sqlite.prepare(sql);
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}
