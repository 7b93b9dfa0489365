import { join } from "node:path";
import { type Kysely, sql } from "kysely";
import { afterAll, describe } from "vitest";
import { CallbackStore } from "../../src/store/callback-store.js";
import { openSqlite } from "../../src/store/database.js";
import { openPostgres } from "../../src/store/postgres.js";
import type { Database } from "../../src/store/schema.js";
import { type NewTaskInput, TaskStore } from "../../src/store/task-store.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./postgres.js";

/** Where a test's store lives: a SQLite file in its dir, or a database on the test PostgreSQL. */
export interface StoreBackend {
  readonly name: "sqlite" | "postgres";
  /**
   * The store for `dir`: the same one again for a dir opened before (as a restarted gateway
   * would find it), an empty one for a new dir.
   */
  open(dir: string): Promise<Kysely<Database>>;
}

export const sqliteBackend: StoreBackend = {
  name: "sqlite",
  open: (dir) => openSqlite(join(dir, "multi-heygem.db")),
};

/**
 * PostgreSQL: one database per test file (per `describeStores` block), created at its first store
 * and dropped after the block. A new dir empties it (every table, identities from 1 again), so
 * tests run one store at a time here, as they do with their own dirs on SQLite; a test that needs
 * two databases at once takes them from createTestDatabase().
 */
export function postgresBackend(): StoreBackend & { dispose(): Promise<void> } {
  let database: Promise<TestDatabase> | undefined;
  const seen = new Set<string>();
  return {
    name: "postgres",
    async open(dir) {
      database ??= createTestDatabase();
      const db = await openPostgres((await database).url, { poolSize: 4 });
      if (!seen.has(dir)) {
        seen.add(dir);
        await emptyStore(db);
      }
      return db;
    },
    async dispose() {
      if (database) await (await database).drop();
    },
  };
}

/**
 * Every row gone and every identity back at 1, as in a new SQLite file. Deletes, not TRUNCATE:
 * on a few rows they take milliseconds where TRUNCATE's new files take a fifth of a second.
 */
async function emptyStore(db: Kysely<Database>): Promise<void> {
  const { rows: tables } = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = current_schema() and c.relkind = 'r' and c.relname not like 'kysely%'`.execute(db);
  const { rows: keys } = await sql<{ from: string; to: string }>`
    select conrelid::regclass::text as from, confrelid::regclass::text as to
    from pg_constraint where contype = 'f' and connamespace = current_schema()::regnamespace`.execute(db);
  // A table goes once no table left references it.
  let left = tables.map((t) => t.name);
  while (left.length > 0) {
    const free = left.filter((t) => !keys.some((k) => k.to === t && k.from !== t && left.includes(k.from)));
    if (free.length === 0) throw new Error(`cannot order the deletes of ${left.join(", ")}`);
    for (const table of free) await sql`delete from ${sql.table(table)}`.execute(db);
    left = left.filter((t) => !free.includes(t));
  }
  await sql`select setval(pg_get_serial_sequence(quote_ident(table_name), column_name), 1, false)
    from information_schema.columns
    where table_schema = current_schema() and is_identity = 'YES'`.execute(db);
}

/**
 * The tests of `body` once on each backend: SQLite always; PostgreSQL when the machine has it
 * (always under CI, where a missing server fails the run), else skipped, as
 * test/global-setup.ts says once at the top of the run.
 */
export function describeStores(title: string, body: (backend: StoreBackend) => void): void {
  describe(`${title} (SQLite)`, () => body(sqliteBackend));
  describe.skipIf(!postgresAvailable)(`${title} (PostgreSQL)`, () => {
    const backend = postgresBackend();
    afterAll(() => backend.dispose());
    body(backend);
  });
}

export interface TestStore {
  readonly db: Kysely<Database>;
  readonly tasks: TaskStore;
  readonly callbacks: CallbackStore;
  close(): Promise<void>;
}

/**
 * The gateway's store for `dir` on `backend` (the same store again after a close, as a restarted
 * gateway would find it). Its clock is `now`, so timestamps are whatever a test says.
 */
export async function openTestStore(
  dir: string,
  now: () => Date = () => new Date(),
  backend: StoreBackend = sqliteBackend,
): Promise<TestStore> {
  const db = await backend.open(dir);
  return {
    db,
    tasks: new TaskStore(db, now),
    callbacks: new CallbackStore(db, now),
    close: () => db.destroy(),
  };
}

let made = 0;

/** What POST /tasks would hand the store, with a fresh id unless told. */
export function newTask(over: Partial<NewTaskInput> = {}): NewTaskInput {
  made++;
  return {
    id: `task-${made}-${process.pid}`,
    description: null,
    callbackUrl: null,
    priority: 0,
    options: {},
    audio: { sha256: "a".repeat(64), name: "speech.wav", bytes: 1000, duration: 2.5 },
    video: { sha256: "b".repeat(64), name: "person.mp4", bytes: 5000 },
    ...over,
  };
}
