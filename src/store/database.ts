import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, Migrator, type SqliteDatabase, SqliteDialect, type SqliteStatement } from "kysely";
import { migrationProvider } from "./migrations.js";
import type { Database } from "./schema.js";

/**
 * Opens (creating if needed) the SQLite store and brings its schema up to date.
 * WAL lets readers (the API) go on while the dispatcher writes; `synchronous=NORMAL` under WAL
 * still survives a process crash (only an OS crash can lose the last commits).
 */
export async function openSqlite(file: string): Promise<Kysely<Database>> {
  mkdirSync(dirname(file), { recursive: true });
  const sqlite = new SQLite(file);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    throw new Error(`store migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  return db;
}

const CACHED_STATEMENTS = 256;

/**
 * Kysely prepares every query afresh, and preparing costs more than running a keyed lookup
 * (half the time of `GET /tasks/{id}`, measured in bench/). The gateway sends a small, fixed set
 * of SQL texts, so their prepared statements are kept and reused. Safe because better-sqlite3 is
 * synchronous: a statement is never in use twice at once.
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => sqlite.close(),
    prepare: (sql: string) => {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = sqlite.prepare(sql);
        if (cache.size >= CACHED_STATEMENTS) {
          const oldest = cache.keys().next().value;
          if (oldest !== undefined) cache.delete(oldest);
        }
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}
