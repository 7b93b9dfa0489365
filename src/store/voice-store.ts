import type { Kysely } from "kysely";
import { blobReferences } from "./blob-references.js";
import { nextSeq } from "./dialect.js";
import type { Database, TaskStatus, VoiceRow } from "./schema.js";

export interface NewVoiceInput {
  id: string;
  owner: string | null;
  name: string | null;
  lang: string;
  sha256: string;
  fileName: string;
  bytes: number;
  duration: number;
  referenceText: string | null;
  avatarId: string | null;
}

/** What `DELETE /voices/{id}` did to the store. */
export type VoiceDeletion =
  /** `blobs`: the reference recording when no row needs it any more (its file is the caller's to delete). */
  | { readonly outcome: "deleted"; readonly blobs: readonly string[] }
  | { readonly outcome: "in_use"; readonly liveTasks: number }
  | { readonly outcome: "missing" };

const LIVE: TaskStatus[] = ["pending", "processing"];

/**
 * Voices (issue 12): a reference recording kept under an id, so text tasks can speak in it on any
 * machine that can clone. A voice row holds its blob like an avatar row does
 * (blob-references.ts): a machine that has not prepared the voice yet can always be sent it.
 */
export class VoiceStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
    private readonly beforeWrite: () => Promise<void> = async () => {},
  ) {}

  async create(input: NewVoiceInput): Promise<VoiceRow> {
    await this.beforeWrite();
    await this.db
      .insertInto("voices")
      .values({
        id: input.id,
        seq: nextSeq(this.db, "voices"),
        owner: input.owner,
        name: input.name,
        lang: input.lang,
        sha256: input.sha256,
        file_name: input.fileName,
        bytes: input.bytes,
        duration: input.duration,
        reference_text: input.referenceText,
        avatar_id: input.avatarId,
        created_at: this.now().toISOString(),
      })
      .execute();
    return this.db.selectFrom("voices").selectAll().where("id", "=", input.id).executeTakeFirstOrThrow();
  }

  async get(id: string): Promise<VoiceRow | undefined> {
    return this.db.selectFrom("voices").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Newest first; `owner` limits it to one key's voices. */
  async list(filter: { owner?: string; limit: number; offset: number }): Promise<{
    voices: VoiceRow[];
    total: number;
  }> {
    let query = this.db.selectFrom("voices");
    if (filter.owner !== undefined) query = query.where("owner", "=", filter.owner);
    const [voices, count] = await Promise.all([
      query.selectAll().orderBy("seq", "desc").limit(filter.limit).offset(filter.offset).execute(),
      query.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow(),
    ]);
    return { voices, total: Number(count.n) };
  }

  /**
   * Deletes the voice unless a live task speaks in it; one transaction, so a task being created
   * with it at the same moment either commits first (and this refuses) or finds it gone (and is
   * refused: TaskStore.createTask checks in its own transaction).
   */
  async delete(id: string): Promise<VoiceDeletion> {
    await this.beforeWrite();
    return this.db.transaction().execute(async (trx): Promise<VoiceDeletion> => {
      // Locked before the count: a task being created with this voice reads the row `for share`
      // in its transaction, so it either committed before the count sees it or waits for this
      // delete and finds the row gone (on PostgreSQL; SQLite runs one transaction at a time).
      await trx.selectFrom("voices").select("id").where("id", "=", id).forUpdate().execute();
      const live = await trx
        .selectFrom("tasks")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("voice_id", "=", id)
        .where("status", "in", LIVE)
        .executeTakeFirstOrThrow();
      if (Number(live.n) > 0) return { outcome: "in_use", liveTasks: Number(live.n) };
      const gone = await trx.deleteFrom("voices").where("id", "=", id).returning("sha256").executeTakeFirst();
      if (!gone) return { outcome: "missing" };
      if ((await blobReferences(trx, [gone.sha256])).has(gone.sha256))
        return { outcome: "deleted", blobs: [] };
      // Measured facts go with the blob, as when retention frees one (retention-store.ts).
      await trx.deleteFrom("media_facts").where("sha256", "=", gone.sha256).execute();
      return { outcome: "deleted", blobs: [gone.sha256] };
    });
  }
}
