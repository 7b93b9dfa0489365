import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { StartupError, StoreUnavailableError } from "../../src/errors.js";
import { notifyGateways } from "../../src/store/dialect.js";
import { probeWritable } from "../../src/store/ops-queries.js";
import { connectPostgres, openPostgres, redactUrl } from "../../src/store/postgres.js";
import { openLink } from "../../src/store/postgres-link.js";
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

  it("elects one dispatching gateway at a time, and the next once the holder's session ends", async () => {
    const { url } = await fresh();
    const heard: string[] = [];
    const a = await openLink(url, { timeoutMs: 5000, onNotice: (p) => heard.push(`a ${p}`) });
    const b = await openLink(url, { timeoutMs: 5000, onNotice: (p) => heard.push(`b ${p}`) });
    try {
      expect(await a.tryLead()).toBe(true);
      expect(await b.tryLead()).toBe(false);
      // Another database on the same server is another store, with its own dispatcher.
      const other = await openLink((await fresh()).url, { timeoutMs: 5000, onNotice: () => undefined });
      expect(await other.tryLead()).toBe(true);
      other.close();
      await a.ping();
      a.close();
      await a.ended;
      expect(a.lost).toBe(false);
      // The server drops the session's lock when the session ends (as when its process dies).
      await until(() => b.tryLead(), 10_000);
      expect(b.lost).toBe(false);
    } finally {
      a.close();
      b.close();
    }
  });

  it("hears a gateway's notice when its transaction commits, and never one rolled back", async () => {
    const { url } = await fresh();
    const db = await openPostgres(url);
    const heard: string[] = [];
    const link = await openLink(url, { timeoutMs: 5000, onNotice: (p) => heard.push(p) });
    try {
      await db
        .transaction()
        .execute(async (trx) => {
          await notifyGateways(trx, "e:rolledback");
          throw new Error("roll back");
        })
        .catch(() => undefined);
      await db.transaction().execute(async (trx) => {
        await notifyGateways(trx, "e:one");
        await notifyGateways(trx, "e:one");
        // Not yet: a NOTIFY is delivered at commit.
        await link.ping();
        expect(heard).toEqual([]);
      });
      await notifyGateways(db, "m:two");
      await until(() => heard.length >= 2, 10_000);
      await link.ping();
      expect(heard).toEqual(["e:one", "m:two"]);
    } finally {
      link.close();
      await db.destroy();
    }
  });

  it("gives up a link whose server went silent within its deadline, and so stops dispatching", async () => {
    const { url } = await fresh();
    const target = new URL(url);
    const proxy = await startCuttableProxy(Number(target.port || 5432));
    target.port = String(proxy.port);
    const link = await openLink(target.toString(), { timeoutMs: 1500, onNotice: () => undefined });
    try {
      expect(await link.tryLead()).toBe(true);
      proxy.stall();
      const err = await link.ping().catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/did not answer within 1500 ms/);
      await link.ended;
      expect(link.lost).toBe(true);
    } finally {
      link.close();
      await proxy.close();
    }
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
