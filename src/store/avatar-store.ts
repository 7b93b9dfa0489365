import type { Kysely } from "kysely";
import { blobReferences } from "./blob-references.js";
import { nextSeq } from "./dialect.js";
import type { AvatarRow, Database, TaskStatus } from "./schema.js";

export interface NewAvatarInput {
  id: string;
  owner: string | null;
  name: string | null;
  sha256: string;
  fileName: string;
  bytes: number;
  duration: number;
  width: number;
  height: number;
  fps: number;
}

/** What `DELETE /avatars/{id}` did to the store. */
export type AvatarDeletion =
  /** `blobs`: the avatar's video when no row needs it any more (its file is the caller's to delete). */
  | { readonly outcome: "deleted"; readonly blobs: readonly string[] }
  | { readonly outcome: "in_use"; readonly liveTasks: number }
  | { readonly outcome: "missing" };

const LIVE: TaskStatus[] = ["pending", "processing"];

/**
 * Avatars (issue 12): a template video kept under an id, so the tasks that use it upload only
 * their audio. An avatar row holds its blob like a task row does (blob-references.ts), so retention
 * never deletes the video of an avatar that exists.
 */
export class AvatarStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
    private readonly beforeWrite: () => Promise<void> = async () => {},
  ) {}

  async create(input: NewAvatarInput): Promise<AvatarRow> {
    await this.beforeWrite();
    await this.db
      .insertInto("avatars")
      .values({
        id: input.id,
        seq: nextSeq(this.db, "avatars"),
        owner: input.owner,
        name: input.name,
        sha256: input.sha256,
        file_name: input.fileName,
        bytes: input.bytes,
        duration: input.duration,
        width: input.width,
        height: input.height,
        fps: input.fps,
        created_at: this.now().toISOString(),
      })
      .execute();
    return this.db.selectFrom("avatars").selectAll().where("id", "=", input.id).executeTakeFirstOrThrow();
  }

  async get(id: string): Promise<AvatarRow | undefined> {
    return this.db.selectFrom("avatars").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Newest first; `owner` limits it to one key's avatars. */
  async list(filter: { owner?: string; limit: number; offset: number }): Promise<{
    avatars: AvatarRow[];
    total: number;
  }> {
    let query = this.db.selectFrom("avatars");
    if (filter.owner !== undefined) query = query.where("owner", "=", filter.owner);
    const [avatars, count] = await Promise.all([
      query.selectAll().orderBy("seq", "desc").limit(filter.limit).offset(filter.offset).execute(),
      query.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow(),
    ]);
    return { avatars, total: Number(count.n) };
  }

  /**
   * Deletes the avatar unless a live task uses it; one transaction, so a task being created from
   * it at the same moment either commits first (and this refuses) or finds it gone (and is
   * refused: TaskStore.createTask checks in its own transaction). Tasks that finished keep their
   * `avatar_id` and, through `video_sha256`, the blob until retention releases them.
   */
  async delete(id: string): Promise<AvatarDeletion> {
    await this.beforeWrite();
    return this.db.transaction().execute(async (trx): Promise<AvatarDeletion> => {
      // Locked before the count: a task being created from this avatar reads the row `for share`
      // in its transaction, so it either committed before the count sees it or waits for this
      // delete and finds the row gone (on PostgreSQL; SQLite runs one transaction at a time).
      await trx.selectFrom("avatars").select("id").where("id", "=", id).forUpdate().execute();
      const live = await trx
        .selectFrom("tasks")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("avatar_id", "=", id)
        .where("status", "in", LIVE)
        .executeTakeFirstOrThrow();
      if (Number(live.n) > 0) return { outcome: "in_use", liveTasks: Number(live.n) };
      const gone = await trx
        .deleteFrom("avatars")
        .where("id", "=", id)
        .returning("sha256")
        .executeTakeFirst();
      if (!gone) return { outcome: "missing" };
      if ((await blobReferences(trx, [gone.sha256])).has(gone.sha256))
        return { outcome: "deleted", blobs: [] };
      // Measured facts go with the blob, as when retention frees one (retention-store.ts).
      await trx.deleteFrom("media_facts").where("sha256", "=", gone.sha256).execute();
      return { outcome: "deleted", blobs: [gone.sha256] };
    });
  }
}
