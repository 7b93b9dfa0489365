import pg from "pg";

/**
 * The machine's PostgreSQL, for the store tests' second backend (issue 13): the server on
 * 127.0.0.1:5432 with trust auth, as this project's machines and CI have it
 * (`MULTI_HEYGEM_TEST_PG` names another server, as the URL of a database to connect to while
 * creating the others). Each test file gets databases of its own, created for it and dropped
 * after it.
 */
export const TEST_PG_URL = process.env.MULTI_HEYGEM_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** What a machine without PostgreSQL misses; printed once by test/global-setup.ts. */
export const POSTGRES_HINT =
  `PostgreSQL store tests skipped: no PostgreSQL answers at ${TEST_PG_URL} ` +
  "(apt-get install postgresql, then start it as .ci/run does)";

/**
 * Whether the server answers. Under CI it must (.ci/run starts it), so there a missing server
 * fails the run instead of skipping half of the store tests.
 */
export async function locatePostgres(): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch (err) {
    if (process.env.CI) {
      throw new Error(`${POSTGRES_HINT}; .ci/run should have started it (${String(err)})`);
    }
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Resolved once per test file that imports it. */
export const postgresAvailable: boolean = await locatePostgres();

let made = 0;

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops it, closing whatever connections are still open on it. */
  drop(): Promise<void>;
}

/**
 * A new, empty database on the test server. Its name carries the test process's pid, so a run
 * that died before dropping its databases is cleaned up by the next (`dropAbandonedDatabases`).
 * Commits do not wait for the disk in it (`synchronous_commit = off`): the tests check what the
 * store does, not the server's durability, and wait less.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  made++;
  const name = `mh_test_${process.pid}_${made}_${Math.random().toString(36).slice(2, 8)}`;
  await admin(async (client) => {
    await client.query(`create database ${name}`);
    await client.query(`alter database ${name} set synchronous_commit = off`);
  });
  const url = new URL(TEST_PG_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () =>
      admin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  };
}

/** Test databases whose process is gone (it was killed before its afterAll ran). */
export async function dropAbandonedDatabases(): Promise<void> {
  await admin(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "select datname from pg_database where datname like 'mh\\_test\\_%'",
    );
    for (const { datname } of rows) {
      const pid = Number(datname.split("_")[2]);
      if (Number.isInteger(pid) && !alive(pid)) {
        await client.query(`drop database if exists ${datname} with (force)`);
      }
    }
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function admin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}
