import type { Kysely } from "kysely";
import type { CallbackRow, Database } from "./schema.js";

/**
 * The callback deliveries that status changes wrote (TaskStore.recordStatus), as the callback
 * sender reads and settles them.
 */
export class CallbackStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private stamp(): string {
    return this.now().toISOString();
  }

  /**
   * The oldest undelivered callback of each task that is due now. Later deliveries of a task wait
   * for earlier ones, so a receiver sees a task's status changes in order.
   */
  async dueCallbacks(limit: number): Promise<CallbackRow[]> {
    const now = this.stamp();
    return this.db
      .selectFrom("callbacks as c")
      .selectAll()
      .where("c.state", "=", "pending")
      .where("c.next_at", "<=", now)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("callbacks as e")
              .select("e.id")
              .whereRef("e.task_id", "=", "c.task_id")
              .where("e.state", "=", "pending")
              .whereRef("e.id", "<", "c.id"),
          ),
        ),
      )
      .orderBy("c.id")
      .limit(limit)
      .execute();
  }

  async nextCallbackDue(): Promise<string | undefined> {
    const row = await this.db
      .selectFrom("callbacks")
      .select((eb) => eb.fn.min("next_at").as("next"))
      .where("state", "=", "pending")
      .executeTakeFirst();
    return row?.next ?? undefined;
  }

  async settleCallback(
    id: number,
    outcome: { state: "delivered" | "given_up" | "pending"; tries: number; nextAt?: Date; error?: string },
  ): Promise<void> {
    await this.db
      .updateTable("callbacks")
      .set({
        state: outcome.state,
        tries: outcome.tries,
        next_at: (outcome.nextAt ?? this.now()).toISOString(),
        last_error: outcome.error ?? null,
      })
      .where("id", "=", id)
      .execute();
  }
}
