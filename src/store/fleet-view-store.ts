import type { Kysely } from "kysely";
import type { Database } from "./schema.js";

/** The fleet as the dispatching gateway last published it. */
export interface PublishedFleet {
  gateway: string;
  epoch: number;
  publishedAt: string;
  /** GET /machines' `machines`, as the dispatching gateway computed them. */
  machines: unknown[];
}

/**
 * What the dispatching gateway knows of the machines (issue 13, migration 0012): their load is
 * the attempts it runs, which no other gateway sees, so it publishes its GET /machines here and
 * the others answer with it. One row, replaced at each publication.
 */
export class FleetViewStore {
  constructor(private readonly db: Kysely<Database>) {}

  async publish(view: PublishedFleet): Promise<void> {
    const values = {
      gateway: view.gateway,
      epoch: view.epoch,
      published_at: view.publishedAt,
      machines: JSON.stringify(view.machines),
    };
    await this.db
      .insertInto("fleet_view")
      .values({ id: 1, ...values })
      .onConflict((oc) => oc.column("id").doUpdateSet(values))
      .execute();
  }

  async read(): Promise<PublishedFleet | undefined> {
    const row = await this.db.selectFrom("fleet_view").selectAll().where("id", "=", 1).executeTakeFirst();
    if (!row) return undefined;
    const machines: unknown = JSON.parse(row.machines);
    return {
      gateway: row.gateway,
      epoch: Number(row.epoch),
      publishedAt: row.published_at,
      machines: Array.isArray(machines) ? machines : [],
    };
  }
}
