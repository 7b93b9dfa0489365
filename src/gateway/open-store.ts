import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Kysely } from "kysely";
import type { GatewayConfig } from "../config/gateway-config.js";
import { StartupError } from "../errors.js";
import type { Logger } from "../logger.js";
import { assertStoreNotLost, openSqlite } from "../store/database.js";
import { openPostgres, redactUrl } from "../store/postgres.js";
import type { Database } from "../store/schema.js";

/** The gateway's store, open and migrated. */
export interface GatewayStore {
  readonly db: Kysely<Database>;
  readonly kind: "sqlite" | "postgres";
  /**
   * The path whose disappearance or replacement means the gateway's state is gone (DataDirHealth):
   * the SQLite file, or with PostgreSQL the data dir that holds the blobs.
   */
  readonly watched: string;
  close(): Promise<void>;
}

const SQLITE_FILE = "multi-heygem.db";
/** Left in a data dir whose blobs belong to a PostgreSQL store. */
const POSTGRES_MARKER = "postgres-store.txt";

/**
 * The SQLite file in the data dir, or with `--store postgres://…` (issue 13) the PostgreSQL
 * database, which other gateways may share (coordination/coordinator.ts).
 *
 * A data dir's blobs belong to one store: the other would find no row for them, and the
 * retention sweep's orphan walk would delete them within the hour. So a PostgreSQL gateway
 * refuses a data dir that holds a SQLite store with tasks, and marks the one it uses; a SQLite
 * gateway refuses a data dir so marked that has no SQLite file.
 */
export async function openGatewayStore(config: GatewayConfig, logger: Logger): Promise<GatewayStore> {
  const file = join(config.dataDir, SQLITE_FILE);
  const marker = join(config.dataDir, POSTGRES_MARKER);
  if (config.storeUrl === undefined) {
    const sqliteSize = await sizeOf(file);
    if (sqliteSize === undefined && (await sizeOf(marker)) !== undefined) {
      const url = (await readFile(marker, "utf8")).split("\n")[0]?.trim() ?? "";
      throw new StartupError(
        `${config.dataDir} holds the blobs of a PostgreSQL store (${url}): start the gateway with ` +
          `--store, or give a SQLite store its own --data-dir`,
      );
    }
    await assertStoreNotLost(file, config.blobsDir);
    const db = await openSqlite(file);
    return { db, kind: "sqlite", watched: file, close: () => db.destroy() };
  }

  const url = config.storeUrl;
  const marked = await readFile(marker, "utf8").then(
    (text) => text.split("\n")[0]?.trim(),
    () => undefined,
  );
  if (marked !== undefined && marked !== redactUrl(url)) {
    // The same database may well be reached by another name; a different one would see the
    // blobs as orphans. Said, not refused: only the operator knows which it is.
    logger.warn(
      { store: redactUrl(url), data_dir_store: marked },
      "this data dir's blobs were last used with another --store URL: if it is another database, its retention sweep will delete them as orphans",
    );
  }
  if (((await sizeOf(file)) ?? 0) > 0) {
    throw new StartupError(
      `${config.dataDir} holds a SQLite store (${SQLITE_FILE}), whose blobs a PostgreSQL store would ` +
        "take for orphans and delete: give the PostgreSQL gateway its own --data-dir",
    );
  }
  const db = await openPostgres(url, {
    onConnectionError: (err) =>
      logger.warn({ err, store: redactUrl(url) }, "a PostgreSQL connection failed; it will be replaced"),
  });
  await writeFile(
    marker,
    `${redactUrl(url)}\nThe blobs in this data dir belong to the PostgreSQL store above (multi-heygem --store).\n`,
  ).catch(async (err: unknown) => {
    await db.destroy();
    throw err;
  });
  logger.info({ store: redactUrl(url) }, "store: PostgreSQL (blobs in the data dir)");
  const open = db;
  return {
    db: open,
    kind: "postgres",
    watched: config.dataDir,
    close: () => open.destroy(),
  };
}

async function sizeOf(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.size,
    () => undefined,
  );
}
