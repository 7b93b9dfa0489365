import type { Kysely } from "kysely";
import type { Database } from "./schema.js";
import { taskTotalsByStatus } from "./task-totals.js";

/**
 * The store's figures an operator watches (GET /metrics, GET /readyz), read at scrape time so
 * they are right after a restart without anything kept in memory. Tasks are read from the totals
 * kept as they change (task-totals.ts), callbacks from an index (callbacks_due), not a table scan.
 */

/** How many tasks are in each status; statuses with no task are absent. */
export function countTasksByStatus(db: Kysely<Database>): Promise<Map<string, number>> {
  return taskTotalsByStatus(db);
}

/** How many callback deliveries are in each state (`pending` is the backlog). */
export async function countCallbacksByState(db: Kysely<Database>): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom("callbacks")
    .select(["state", (eb) => eb.fn.countAll<number>().as("n")])
    .groupBy("state")
    .execute();
  return new Map(rows.map((r) => [r.state, Number(r.n)]));
}

/** Thrown inside the probe's transaction so that what it wrote is rolled back. */
class ProbeRollback extends Error {}

/**
 * Proves the store takes writes: a real insert (which takes SQLite's write lock and fails on a
 * read-only file or a locked database), then rolled back, so the probe leaves nothing behind.
 */
export async function probeWritable(db: Kysely<Database>, at: string): Promise<void> {
  try {
    await db.transaction().execute(async (trx) => {
      await trx
        .insertInto("machine_flags")
        // No machine can have this name (names are letters, digits and `_.-`); PostgreSQL's text
        // cannot hold the NUL byte once used here.
        .values({ name: "(readyz probe)", draining: 0, updated_at: at })
        .onConflict((oc) => oc.doNothing())
        .execute();
      throw new ProbeRollback();
    });
  } catch (err) {
    if (!(err instanceof ProbeRollback)) throw err;
  }
}
