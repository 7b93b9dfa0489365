import type { Kysely } from "kysely";
import type { MediaInfo } from "../media/probe.js";
import type { Database, MediaFactsTable } from "./schema.js";

export type MediaFactsSource = MediaFactsTable["source"];

/** Media facts by content hash: a blob's streams never change, so they are measured once. */
export class MediaFactsStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async get(sha256: string): Promise<MediaInfo | undefined> {
    const row = await this.db
      .selectFrom("media_facts")
      .select("facts")
      .where("sha256", "=", sha256)
      .executeTakeFirst();
    return row ? (JSON.parse(row.facts) as MediaInfo) : undefined;
  }

  async put(sha256: string, facts: MediaInfo, source: MediaFactsSource): Promise<void> {
    await this.db
      .insertInto("media_facts")
      .values({ sha256, facts: JSON.stringify(facts), source, created_at: this.now().toISOString() })
      .onConflict((oc) => oc.column("sha256").doNothing())
      .execute();
  }
}
