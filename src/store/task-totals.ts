import type { Kysely, Transaction } from "kysely";
import type { Database, TaskStatus } from "./schema.js";

/** The owner under which tasks created without API keys (owner null) are counted. */
const NO_OWNER = "";

/** A change of how many tasks `owner` has in `status`. */
export interface TotalsChange {
  readonly owner: string | null;
  readonly status: TaskStatus;
  readonly n: number;
}

/**
 * How many tasks each owner has in each status (GET /tasks's `total`, GET /metrics), kept in the
 * transaction of every change of a task's status instead of counted from the tasks: counting a
 * million completed tasks took ~22 ms for each page of them, and every metrics scrape counted all
 * the tasks twice (issue 14). TaskStore changes it with each status it writes, RetentionStore
 * with each task it deletes (migration 0016 started it from the tasks there were).
 *
 * The rows are changed in one order (owner, then status), so that two transactions never each
 * hold one the other waits for (PostgreSQL locks a row it updates until the commit).
 */
export async function addToTaskTotals(
  trx: Transaction<Database>,
  changes: readonly TotalsChange[],
): Promise<void> {
  const merged = new Map<string, { owner: string; status: TaskStatus; n: number }>();
  for (const change of changes) {
    const owner = change.owner ?? NO_OWNER;
    const key = `${owner}\n${change.status}`;
    const row = merged.get(key) ?? { owner, status: change.status, n: 0 };
    row.n += change.n;
    merged.set(key, row);
  }
  const rows = [...merged.values()]
    .filter((row) => row.n !== 0)
    .sort((a, b) => (a.owner === b.owner ? cmp(a.status, b.status) : cmp(a.owner, b.owner)));
  for (const { owner, status, n } of rows) {
    await trx
      .insertInto("task_totals")
      .values({ owner, status, n })
      .onConflict((oc) =>
        oc.columns(["owner", "status"]).doUpdateSet((eb) => ({ n: eb("task_totals.n", "+", n) })),
      )
      .execute();
    // A count that falls to nothing leaves no row: the store holds nothing for what is gone (issue 10).
    if (n < 0)
      await trx
        .deleteFrom("task_totals")
        .where("owner", "=", owner)
        .where("status", "=", status)
        .where("n", "=", 0)
        .execute();
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** How many tasks have `status` (all when absent), of `owner` (every owner's when absent). */
export async function taskTotal(
  db: Kysely<Database>,
  filter: { status?: TaskStatus | undefined; owner?: string | undefined },
): Promise<number> {
  let query = db.selectFrom("task_totals").select((eb) => eb.fn.sum<number | string | null>("n").as("n"));
  if (filter.status !== undefined) query = query.where("status", "=", filter.status);
  if (filter.owner !== undefined) query = query.where("owner", "=", filter.owner);
  const row = await query.executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** How many tasks are in each status; statuses with no task are absent. */
export async function taskTotalsByStatus(db: Kysely<Database>): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom("task_totals")
    .select(["status", (eb) => eb.fn.sum<number | string>("n").as("n")])
    .groupBy("status")
    .execute();
  return new Map(rows.map((r) => [r.status, Number(r.n)]));
}
