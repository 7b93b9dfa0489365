import { type Kysely, sql } from "kysely";
import type { Database } from "./schema.js";

/** Up to this many hashes per query: SQLite binds at most 32766 parameters, five uses each here. */
const CHUNK = 500;

/**
 * Which of `shas` some row still needs: the one place that knows what references a blob, so a
 * blob is deleted only when this answers no (issue 10). Today the sources are the tasks that keep
 * their files (`files_deleted_at` null): live ones, finished ones within --retention, and finished
 * ones past it that the sweep has not reached yet (the last of those to be swept frees the blob);
 * every avatar (issue 12): its video stays as long as the avatar does, whatever its tasks; and
 * every voice (issue 12): its reference recording, for the machines that have not prepared it yet.
 *
 * Each arm is a lookup in an index (the partial `tasks_<column>_blob` of migration 0007,
 * `avatars_blob` of 0009, `voices_blob` of 0011), so the cost does not grow with the number of tasks or avatars.
 */
export async function blobReferences(db: Kysely<Database>, shas: Iterable<string>): Promise<Set<string>> {
  const all = [...new Set(shas)];
  const needed = new Set<string>();
  for (let i = 0; i < all.length; i += CHUNK) {
    const chunk = all.slice(i, i + CHUNK);
    const keptBy = (column: "audio_sha256" | "video_sha256" | "result_sha256") =>
      sql<{ sha256: string }>`select ${sql.ref(column)} as sha256 from tasks
        where ${sql.ref(column)} in (${sql.join(chunk)}) and files_deleted_at is null`;
    const { rows } = await sql<{ sha256: string }>`${keptBy("audio_sha256")}
      union ${keptBy("video_sha256")}
      union ${keptBy("result_sha256")}
      union select sha256 from avatars where sha256 in (${sql.join(chunk)})
      union select sha256 from voices where sha256 in (${sql.join(chunk)})`.execute(db);
    for (const row of rows) needed.add(row.sha256);
  }
  return needed;
}

/** Whether some row still needs the blob `sha256`. */
export async function blobNeeded(db: Kysely<Database>, sha256: string): Promise<boolean> {
  return (await blobReferences(db, [sha256])).has(sha256);
}
