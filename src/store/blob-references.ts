import { type Kysely, sql } from "kysely";
import type { Database } from "./schema.js";

/** Up to this many hashes per query. */
const CHUNK = 500;

/**
 * Which of `shas` some row still needs: the one place that knows what references a blob, so a
 * blob is deleted only when this answers no (issue 10). Today the sources are the tasks that keep
 * their files (`files_deleted_at` null): live ones, finished ones within --retention, and finished
 * ones past it that the sweep has not reached yet (the last of those to be swept frees the blob);
 * every avatar (issue 12): its video stays as long as the avatar does, whatever its tasks; and
 * every voice (issue 12): its reference recording, for the machines that have not prepared it yet.
 *
 * Each question is an `exists`, a lookup in an index (the partial `tasks_<column>_blob` of
 * migration 0007, `avatars_blob` of 0009, `voices_blob` of 0011) that stops at the first row: a
 * template that a million tasks share costs what a blob of one task costs (issue 14; reading
 * every row that needs it, as a union did, took ~35 ms for 250k such tasks, in each retention batch).
 */
export async function blobReferences(db: Kysely<Database>, shas: Iterable<string>): Promise<Set<string>> {
  const all = [...new Set(shas)];
  const needed = new Set<string>();
  for (let i = 0; i < all.length; i += CHUNK) {
    const { rows } = await referencesQuery(all.slice(i, i + CHUNK)).execute(db);
    for (const row of rows) needed.add(row.sha256);
  }
  return needed;
}

/** The query for one chunk of `blobReferences` (not empty). */
export function referencesQuery(chunk: readonly string[]) {
  const keptBy = (column: "audio_sha256" | "video_sha256" | "result_sha256") =>
    sql`exists (select 1 from tasks where ${sql.ref(`tasks.${column}`)} = s.sha256 and tasks.files_deleted_at is null)`;
  return sql<{ sha256: string }>`with s (sha256) as (values ${sql.join(chunk.map((sha) => sql`(${sha})`))})
    select s.sha256 from s
    where ${keptBy("audio_sha256")} or ${keptBy("video_sha256")} or ${keptBy("result_sha256")}
      or exists (select 1 from avatars where avatars.sha256 = s.sha256)
      or exists (select 1 from voices where voices.sha256 = s.sha256)`;
}

/** Whether some row still needs the blob `sha256`. */
export async function blobNeeded(db: Kysely<Database>, sha256: string): Promise<boolean> {
  return (await blobReferences(db, [sha256])).has(sha256);
}
