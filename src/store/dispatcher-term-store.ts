import type { Kysely } from "kysely";
import type { Database, DispatcherTermTable } from "./schema.js";

/**
 * The terms of the dispatching gateway (issue 13, migration 0012): a gateway elected to dispatch
 * begins a term with an epoch higher than any before, and its slot claims hold only while that
 * epoch is the newest (TaskStore.startAttempt). One row; the epoch only grows.
 */
export class DispatcherTermStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Begins a new term for `gateway`; returns its epoch. */
  async begin(gateway: string): Promise<number> {
    const startedAt = this.now().toISOString();
    const row = await this.db
      .insertInto("dispatcher_term")
      .values({ id: 1, epoch: 1, gateway, started_at: startedAt })
      .onConflict((oc) =>
        oc.column("id").doUpdateSet((eb) => ({
          epoch: eb("dispatcher_term.epoch", "+", 1),
          gateway,
          started_at: startedAt,
        })),
      )
      .returning("epoch")
      .executeTakeFirstOrThrow();
    return Number(row.epoch);
  }

  /** The term under way (or the last one, if its gateway is gone); undefined before the first. */
  async current(): Promise<DispatcherTermTable | undefined> {
    return this.db.selectFrom("dispatcher_term").selectAll().where("id", "=", 1).executeTakeFirst();
  }
}
