import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { StartupError, StoreUnavailableError } from "../../src/errors.js";
import { probeWritable } from "../../src/store/ops-queries.js";
import { connectPostgres, holdSoleGateway, openPostgres, redactUrl } from "../../src/store/postgres.js";
import { startCuttableProxy } from "../helpers/cuttable-proxy.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { until } from "../helpers/until.js";

describe.skipIf(!postgresAvailable)("the PostgreSQL store", () => {
  const databases: TestDatabase[] = [];
  const fresh = async () => {
    const database = await createTestDatabase();
    databases.push(database);
    return database;
  };
  afterEach(async () => {
    for (const database of databases.splice(0)) await database.drop();
  });

  it("migrates a fresh database once when several gateways start on it together", async () => {
    const { url } = await fresh();
    const opened = await Promise.all([openPostgres(url), openPostgres(url), openPostgres(url)]);
    try {
      const [db] = opened;
      if (!db) throw new Error("no store");
      const { rows: ran } = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
      expect(ran.length).toBeGreaterThanOrEqual(9);
      expect(new Set(ran.map((r) => r.name)).size).toBe(ran.length);
      // What PostgreSQL made of SQLite's types: 64-bit integers, doubles, identities.
      const { rows: columns } = await sql<{ table: string; column: string; type: string; identity: string }>`
        select table_name as table, column_name as column, data_type as type, is_identity as identity
        from information_schema.columns where table_schema = current_schema()
          and (table_name, column_name) in (('tasks','seq'), ('tasks','audio_bytes'), ('tasks','audio_duration'),
            ('events','id'), ('avatars','seq'), ('voices','seq'), ('avatars','fps'))
        order by 1, 2`.execute(db);
      expect(
        columns.map((c) => `${c.table}.${c.column} ${c.type}${c.identity === "YES" ? " identity" : ""}`),
      ).toEqual([
        "avatars.fps double precision",
        "avatars.seq bigint identity",
        "events.id bigint identity",
        "tasks.audio_bytes bigint",
        "tasks.audio_duration double precision",
        "tasks.seq bigint identity",
        "voices.seq bigint identity",
      ]);
    } finally {
      await Promise.all(opened.map((db) => db.destroy()));
    }
    // A later start finds nothing to do.
    const again = await openPostgres(url);
    await again.destroy();
  });

  it("refuses a server, a database or a user it cannot use, saying which, without the password", async () => {
    const { url } = await fresh();
    const at = (change: (u: URL) => void) => {
      const u = new URL(url);
      change(u);
      return u.toString();
    };
    const refusal = async (target: string) => {
      const err = await openPostgres(target).then(
        async (db) => {
          await db.destroy();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StartupError);
      return (err as Error).message;
    };
    const closed = await refusal(
      at((u) => {
        u.port = "1";
        u.password = "s3cret";
      }),
    );
    expect(closed).toMatch(/cannot use the PostgreSQL store .*check that PostgreSQL runs there/);
    expect(closed).toContain(":***@127.0.0.1:1/");
    expect(closed).not.toContain("s3cret");
    expect(
      await refusal(
        at((u) => {
          u.pathname = "/mh_no_such_database";
        }),
      ),
    ).toMatch(/database "mh_no_such_database" does not exist.*create the database first/);
    expect(
      await refusal(
        at((u) => {
          u.username = "mh_no_such_user";
        }),
      ),
    ).toMatch(/mh_no_such_user.*check the user and password/);
    expect(redactUrl("postgres://u:p@h/d?password=x&sslmode=require")).toBe(
      "postgres://u:***@h/d?password=***&sslmode=require",
    );
  });

  it("lets one gateway at a time hold a database, and names the one that does", async () => {
    const { url } = await fresh();
    const lost: Error[] = [];
    const first = await holdSoleGateway(url, (err) => lost.push(err));
    const refused = await holdSoleGateway(url, (err) => lost.push(err)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StartupError);
    expect((refused as Error).message).toMatch(
      new RegExp(
        `in use by another multi-heygem gateway \\(pid ${process.pid} on .+\\); .*one gateway per database`,
      ),
    );
    // Another database on the same server is another store.
    const other = await holdSoleGateway((await fresh()).url, (err) => lost.push(err));
    await first.release();
    const second = await holdSoleGateway(url, (err) => lost.push(err));
    await second.release();
    await other.release();
    expect(lost).toEqual([]);
  });

  it("answers STORE_UNAVAILABLE for a server it cannot reach, without its address (GET /readyz is public)", async () => {
    const { db } = connectPostgres("postgres://postgres:s3cret@127.0.0.1:1/x");
    try {
      const err = await probeWritable(db, new Date().toISOString()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toBe(
        "the store's database cannot be reached (ECONNREFUSED); nothing was stored, try again later",
      );
      // A query PostgreSQL refused is its own error, as before.
      const { url } = await fresh();
      const live = await openPostgres(url);
      const refused = await sql`select * from no_such_table`.execute(live).catch((e: unknown) => e);
      await live.destroy();
      expect(refused).not.toBeInstanceOf(StoreUnavailableError);
      expect((refused as Error).message).toMatch(/no_such_table/);
    } finally {
      await db.destroy();
    }
  });

  it("survives a connection lost in the middle of a transaction: reported, and the transaction fails 503", async () => {
    const { url } = await fresh();
    await (await openPostgres(url)).destroy();
    const target = new URL(url);
    const proxy = await startCuttableProxy(Number(target.port || 5432));
    target.port = String(proxy.port);
    const lost: Error[] = [];
    const { db } = connectPostgres(target.toString(), { onConnectionError: (err) => lost.push(err) });
    try {
      const outcome = await db
        .transaction()
        .execute(async (trx) => {
          await sql`select 1`.execute(trx);
          // Between two queries of the transaction, the connection goes.
          proxy.cut();
          await until(() => lost.length > 0, 10_000);
          await sql`select 1`.execute(trx);
        })
        .catch((e: unknown) => e);
      expect(outcome).toBeInstanceOf(StoreUnavailableError);
      expect(lost[0]?.message).toMatch(/Connection terminated/);
      proxy.restore();
      expect((await sql<{ n: number }>`select 1 as n`.execute(db)).rows).toEqual([{ n: 1 }]);
    } finally {
      await db.destroy();
      await proxy.close();
    }
  });
});
