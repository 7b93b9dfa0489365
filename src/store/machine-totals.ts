import type { Kysely, Transaction } from "kysely";
import type { Database } from "./schema.js";

/** How an attempt that counts in a machine's history ended. */
export type AttemptOutcome = "succeeded" | "failed";

/**
 * Each machine's attempts that succeeded and failed (GET /machines' `tasks_done`, `tasks_failed`),
 * kept as the attempts end rather than counted from them: a count over every attempt ever kept
 * took ~0.4 s at a million, on every GET /machines (issue 14). Changed in the transaction that
 * ends or deletes the attempts, so it always agrees with the attempt rows (migration 0015).
 */
export async function addToMachineTotals(
  trx: Transaction<Database>,
  machine: string,
  outcome: AttemptOutcome,
  n: number,
): Promise<void> {
  const done = outcome === "succeeded" ? n : 0;
  const failed = outcome === "failed" ? n : 0;
  await trx
    .insertInto("machine_totals")
    .values({ machine, done, failed })
    .onConflict((oc) =>
      oc.column("machine").doUpdateSet((eb) => ({
        done: eb("machine_totals.done", "+", done),
        failed: eb("machine_totals.failed", "+", failed),
      })),
    )
    .execute();
  // A machine whose history retention has all deleted leaves no row (issue 10).
  if (n < 0)
    await trx
      .deleteFrom("machine_totals")
      .where("machine", "=", machine)
      .where("done", "=", 0)
      .where("failed", "=", 0)
      .execute();
}

/** Takes the attempts of `taskIds` out of the totals, before they are deleted (retention). */
export async function removeFromMachineTotals(
  trx: Transaction<Database>,
  taskIds: readonly string[],
): Promise<void> {
  if (taskIds.length === 0) return;
  const rows = await trx
    .selectFrom("attempts")
    .select(["machine", "status", (eb) => eb.fn.countAll<number>().as("n")])
    .where("task_id", "in", taskIds)
    .where("status", "in", ["succeeded", "failed"])
    .groupBy(["machine", "status"])
    .execute();
  for (const row of rows)
    await addToMachineTotals(trx, row.machine, row.status as AttemptOutcome, -Number(row.n));
}

export async function machineTotals(
  db: Kysely<Database>,
): Promise<Map<string, { done: number; failed: number }>> {
  const rows = await db.selectFrom("machine_totals").selectAll().execute();
  return new Map(rows.map((r) => [r.machine, { done: Number(r.done), failed: Number(r.failed) }]));
}
