import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from "kysely";
import pg from "pg";
import { StartupError, StoreUnavailableError } from "../errors.js";
import { migrateToLatest } from "./migrations.js";
import type { Database } from "./schema.js";

/**
 * The store on PostgreSQL (`--store postgres://…`, issue 13): the same tables and the same Kysely
 * queries as on SQLite (dialect.ts says where they differ). The blobs stay in the data dir.
 */

export interface PostgresOptions {
  /** Connections the gateway keeps at most; transactions beyond it wait for one. */
  readonly poolSize?: number;
  /**
   * A connection failed outside a query (the server restarted, the network went): it is
   * replaced, and what was running on it fails STORE_UNAVAILABLE. Without a listener such an
   * error would end the process (node-postgres emits it as an `error` event).
   */
  readonly onConnectionError?: (err: Error) => void;
}

const INT8_OID = 20;

/**
 * The migrations' integers are `bigint` on PostgreSQL (dialect.ts), and so are count(*) and
 * max(id); node-postgres hands those over as strings. Every value the store keeps fits a double
 * exactly (sizes, counts, ids, milliseconds), so they are read as numbers, as SQLite gives them.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"],
};

/**
 * Connects to `url`, checks that it answers, and brings the schema up to date (under Kysely's
 * migration lock: gateways starting together migrate once). A server that cannot be reached, a
 * refused login or a missing database stops the start with a line that says which; the URL is
 * shown without its password.
 */
export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<Kysely<Database>> {
  const { db, pool } = connectPostgres(url, options);
  try {
    await pool.query("select 1");
  } catch (err) {
    await db.destroy();
    throw unreachable(url, err);
  }
  const { error, results } = await migrateToLatest(db);
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    throw new StartupError(
      `${redactUrl(url)}: store migration ${failed?.migrationName ?? ""} failed: ${describe(error)}`,
      { cause: error },
    );
  }
  return db;
}

const CONNECT_TIMEOUT_MS = 10_000;

/** The store on `url`, not yet connected nor migrated (openPostgres does both). */
export function connectPostgres(
  url: string,
  options: PostgresOptions = {},
): { db: Kysely<Database>; pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    fallback_application_name: "multi-heygem",
    // A server gone silent (a cut network, not a closed connection) is noticed by the kernel's
    // keepalive instead of never: the queries waiting on it then fail STORE_UNAVAILABLE.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    types,
  });
  const onError = (err: Error) => options.onConnectionError?.(err);
  pool.on("error", onError);
  return {
    db: new Kysely<Database>({ dialect: new PostgresDialect({ pool: guarded(pool, onError) }) }),
    pool,
  };
}

/**
 * The pool as Kysely sees it, with a lost or refused connection turned into STORE_UNAVAILABLE
 * (503: nothing was stored, try again) instead of an internal error, and said without the
 * server's address, which Node's connection errors carry (GET /readyz is public). An error
 * PostgreSQL answered a query with passes unchanged.
 */
function guarded(pool: pg.Pool, onError: (err: Error) => void): PostgresPool {
  return {
    connect: async () => {
      const client = await pool.connect().catch((err: unknown) => {
        throw unavailable(err);
      });
      // The pool listens for errors on idle connections only; one lent out (a transaction between
      // two of its queries) needs a listener of its own until it is given back.
      client.on("error", onError);
      const query = (sqlText: string, parameters: readonly unknown[]) =>
        client.query(sqlText, [...parameters]).catch((err: unknown) => {
          throw unavailable(err);
        });
      // Kysely sends SQL text and parameters only; cursors (streaming) the store does not use.
      return {
        query: query as unknown as PostgresPoolClient["query"],
        release: (destroy) => {
          client.off("error", onError);
          client.release(destroy);
        },
      };
    },
    end: () => pool.end(),
  };
}

/** SQLSTATE classes of a connection that failed rather than a query: 08, 57P0x, 53300. */
const CONNECTION_STATES = /^(08|57P0|53300)/;

function unavailable(err: unknown): unknown {
  const { code, syscall } = err as { code?: unknown; syscall?: unknown };
  const lost =
    err instanceof pg.DatabaseError
      ? typeof code === "string" && CONNECTION_STATES.test(code)
      : typeof syscall === "string" ||
        err instanceof AggregateError ||
        (err instanceof Error &&
          /^Connection terminated|^timeout exceeded when trying to connect|is not queryable$/.test(
            err.message,
          ));
  if (!lost) return err;
  const unreachable = new StoreUnavailableError(
    `the store's database cannot be reached (${typeof code === "string" ? code : "connection lost"}); ` +
      "nothing was stored, try again later",
  );
  unreachable.cause = err;
  return unreachable;
}

/** Why `url` could not be used, as one line that says what to check. */
export function unreachable(url: string, err: unknown): StartupError {
  const code = String((err as { code?: unknown }).code ?? "");
  const where = redactUrl(url);
  const hint =
    code === "3D000"
      ? "create the database first (createdb), or name another one in --store"
      : code === "28P01" || code === "28000"
        ? "check the user and password in --store"
        : code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "ETIMEDOUT"
          ? "check that PostgreSQL runs there and that host and port are right"
          : "check the URL given to --store";
  return new StartupError(`${where}: cannot use the PostgreSQL store (${describe(err)}); ${hint}`, {
    cause: err,
  });
}

function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describe(err.errors[0]);
  if (err instanceof Error && err.message) return err.message;
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : String(err);
}

/** `url` as it may be shown in logs and messages: without its password. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    for (const key of [...parsed.searchParams.keys()]) {
      if (key.toLowerCase() === "password") parsed.searchParams.set(key, "***");
    }
    return parsed.toString();
  } catch {
    return "the --store URL";
  }
}
