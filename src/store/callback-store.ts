import { randomUUID } from "node:crypto";
import type { ExpressionBuilder, Insertable, Kysely } from "kysely";
import type { CallbackRow, CallbacksTable, CallbackTryRow, Database } from "./schema.js";

type WithC = Database & { c: Database["callbacks"] };

/**
 * A delivery row, due at once: one per status change of a task with a callback_url
 * (TaskStore.recordStatus) and one per redelivery. Its webhook-id stays the same on every try.
 */
export function newDelivery(
  input: { taskId: string; eventId: number; url: string; payload: string },
  at: string,
): Insertable<CallbacksTable> {
  return {
    task_id: input.taskId,
    event_id: input.eventId,
    url: input.url,
    payload: input.payload,
    state: "pending",
    tries: 0,
    next_at: at,
    last_error: null,
    created_at: at,
    webhook_id: newWebhookId(),
  };
}

/** A delivery's Standard Webhooks `webhook-id`: fresh per delivery, kept across its retries. */
export function newWebhookId(): string {
  return `msg_${randomUUID().replaceAll("-", "")}`;
}

/** What one try came to, as the sender reports it. */
export interface CallbackTry {
  at: Date;
  durationMs: number;
  httpStatus: number | null;
  error: string | null;
}

export interface CallbackOutcome {
  state: "delivered" | "given_up" | "pending";
  tries: number;
  nextAt?: Date;
  error?: string;
}

/**
 * The callback deliveries that status changes wrote (TaskStore.recordStatus), as the callback
 * sender reads and settles them, and as GET /tasks/{id}/callbacks shows them with every try.
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
   * The oldest undelivered callback of each task that is due now, leaving out `busyTasks` (those
   * with a try under way). Later deliveries of a task wait for earlier ones, so a receiver sees a
   * task's status changes in order.
   */
  async dueCallbacks(limit: number, busyTasks: readonly string[] = []): Promise<CallbackRow[]> {
    const now = this.stamp();
    let query = this.db
      .selectFrom("callbacks as c")
      .selectAll()
      .where("c.state", "=", "pending")
      .where("c.next_at", "<=", now)
      .where(({ not, exists, selectFrom }) => not(exists(this.earlierPending(selectFrom))));
    if (busyTasks.length > 0) query = query.where("c.task_id", "not in", [...busyTasks]);
    return query.orderBy("c.id").limit(limit).execute();
  }

  /**
   * When the next delivery that `dueCallbacks` could return falls due: only the first pending row
   * of each task counts (a later one waits for it, however old), and `busyTasks` wait for their
   * try to end, which wakes the sender anyway. Counting those would wake it at once, in a loop.
   */
  async nextCallbackDue(busyTasks: readonly string[] = []): Promise<string | undefined> {
    let query = this.db
      .selectFrom("callbacks as c")
      .select((eb) => eb.fn.min("c.next_at").as("next"))
      .where("c.state", "=", "pending")
      .where(({ not, exists, selectFrom }) => not(exists(this.earlierPending(selectFrom))));
    if (busyTasks.length > 0) query = query.where("c.task_id", "not in", [...busyTasks]);
    const row = await query.executeTakeFirst();
    return row?.next ?? undefined;
  }

  /** A pending delivery of the same task as `c` that was written before it. */
  private earlierPending(selectFrom: ExpressionBuilder<WithC, "c">["selectFrom"]) {
    return selectFrom("callbacks as e")
      .select("e.id")
      .whereRef("e.task_id", "=", "c.task_id")
      .where("e.state", "=", "pending")
      .whereRef("e.id", "<", "c.id");
  }

  /** Records a try and what follows from it, in one transaction. */
  async settleCallback(row: CallbackRow, outcome: CallbackOutcome, tried?: CallbackTry): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      if (tried) {
        await trx
          .insertInto("callback_tries")
          .values({
            callback_id: row.id,
            task_id: row.task_id,
            at: tried.at.toISOString(),
            duration_ms: Math.round(tried.durationMs),
            http_status: tried.httpStatus,
            error: tried.error,
          })
          .execute();
      }
      await trx
        .updateTable("callbacks")
        .set({
          state: outcome.state,
          tries: outcome.tries,
          next_at: (outcome.nextAt ?? this.now()).toISOString(),
          last_error: outcome.error ?? null,
        })
        .where("id", "=", row.id)
        .execute();
    });
  }

  /** Gives a row from before webhook ids its id, once, before its first signed try. */
  async ensureWebhookId(row: CallbackRow): Promise<string> {
    if (row.webhook_id) return row.webhook_id;
    const id = newWebhookId();
    await this.db.updateTable("callbacks").set({ webhook_id: id }).where("id", "=", row.id).execute();
    return id;
  }

  /** A new delivery of `payload` (a redelivery): its own webhook-id, due now, after the task's others. */
  async addDelivery(input: {
    taskId: string;
    eventId: number;
    url: string;
    payload: string;
  }): Promise<CallbackRow> {
    return this.db
      .insertInto("callbacks")
      .values(newDelivery(input, this.stamp()))
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** A task's deliveries, oldest first, each with its tries in order. */
  async listDeliveries(taskId: string): Promise<Array<CallbackRow & { tryRows: CallbackTryRow[] }>> {
    const [rows, tries] = await Promise.all([
      this.db.selectFrom("callbacks").selectAll().where("task_id", "=", taskId).orderBy("id").execute(),
      this.db.selectFrom("callback_tries").selectAll().where("task_id", "=", taskId).orderBy("id").execute(),
    ]);
    return rows.map((row) => ({ ...row, tryRows: tries.filter((t) => t.callback_id === row.id) }));
  }
}
