import pg from "pg";

/**
 * Fresh databases on the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust auth, as the
 * project's machines and CI have it), created for one benchmark and dropped after it. The server's
 * own settings are kept (synchronous_commit on): a benchmark measures what a deployment gets.
 */
export const BENCH_PG_SERVER = "postgres://postgres@127.0.0.1:5432";

export interface BenchDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops it, ending whatever connections are still open on it (a killed child's). */
  drop(): Promise<void>;
}

async function admin<T>(use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: `${BENCH_PG_SERVER}/postgres`,
    connectionTimeoutMillis: 5000,
  });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Whether the server answers (a benchmark without it says so instead of failing obscurely). */
export async function postgresAnswers(): Promise<boolean> {
  return admin(async (client) => {
    await client.query("select 1");
    return true;
  }).catch(() => false);
}

export async function createBenchDatabase(label: string): Promise<BenchDatabase> {
  const name = `mh_bench_${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await admin((client) => client.query(`create database ${name}`));
  return {
    name,
    url: `${BENCH_PG_SERVER}/${name}`,
    drop: () =>
      admin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  };
}
