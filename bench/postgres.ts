import pg from "pg";
import { redactUrl } from "../src/store/postgres.js";
import { processAlive, type Scope } from "./harness.js";

/**
 * The machine's PostgreSQL, for the benchmarks of several gateways (issue 13): the server on
 * 127.0.0.1:5432 with trust auth, as the tests use it (`MULTI_HEYGEM_BENCH_PG` names another, as
 * the URL of a database to connect to while creating the others). Every measurement gets a new,
 * empty database, dropped when its benchmark's scope closes.
 */
const ADMIN_URL = process.env.MULTI_HEYGEM_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Names carry the bench process's pid, so a run that died before dropping them is cleaned up by the next. */
const PREFIX = "mh_bench_";

export interface BenchDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops it now, ending whatever sessions are still open on it (a killed child's). */
  drop(): Promise<void>;
}

let made = 0;
let sweptAbandoned = false;

/**
 * A new database with the server's own settings (a user's `--store postgres://…` gets those too:
 * on this project's machines, `synchronous_commit = on`, so every commit waits for the WAL on disk).
 */
export async function createBenchDatabase(scope?: Scope): Promise<BenchDatabase> {
  if (!sweptAbandoned) {
    sweptAbandoned = true;
    await dropAbandoned();
  }
  const name = `${PREFIX}${process.pid}_${++made}_${Math.random().toString(36).slice(2, 8)}`;
  await admin((client) => client.query(`create database ${name}`));
  const drop = () =>
    admin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => undefined);
  // With a scope, dropped after it has killed the gateways too; `force` ends any session still open.
  scope?.defer(drop);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop };
}

/** Whether the server answers: a benchmark without it says so instead of failing obscurely. */
export async function postgresAnswers(): Promise<boolean> {
  return admin(async (client) => (await client.query("select 1")).rowCount === 1).catch(() => false);
}

/** A server setting, for the report (e.g. `synchronous_commit`). */
export async function serverSetting(setting: string): Promise<string> {
  return admin(async (client) => {
    const { rows } = await client.query<{ value: string }>("select current_setting($1) as value", [setting]);
    return rows[0]?.value ?? "unknown";
  });
}

export async function serverVersion(): Promise<string> {
  return serverSetting("server_version");
}

async function dropAbandoned(): Promise<void> {
  await admin(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "select datname from pg_database where datname like 'mh\\_bench\\_%'",
    );
    for (const { datname } of rows) {
      const pid = Number(datname.slice(PREFIX.length).split("_")[0]);
      if (Number.isInteger(pid) && !processAlive(pid)) {
        await client.query(`drop database if exists ${datname} with (force)`);
      }
    }
  });
}

async function admin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `no PostgreSQL answers at ${redactUrl(ADMIN_URL)} (${err instanceof Error ? err.message : String(err)}): ` +
        "this benchmark needs one (set MULTI_HEYGEM_BENCH_PG to use another server)",
    );
  }
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}
