import { type Kysely, type RawBuilder, sql, type Transaction } from "kysely";
import { blobReferences } from "./blob-references.js";
import { removeFromMachineTotals } from "./machine-totals.js";
import { type Database, FINAL_TASK_STATUSES, type TaskStatus } from "./schema.js";
import type { TaskStore } from "./task-store.js";
import { addToTaskTotals } from "./task-totals.js";

/**
 * A column the planner must not pick an index for. Without statistics SQLite takes an index on
 * status (`tasks_queue`) for `status in (…)`, which walks every finished task ever kept and sorts
 * them, where the completed_at indexes read just the due ones. An expression has no index:
 * SQLite documents the unary `+` for this, which PostgreSQL has no text operator for, so the
 * column is concatenated with nothing, which both read the same.
 */
function notIndexed(column: "status"): RawBuilder<string> {
  return sql<string>`(${sql.ref(column)} || '')`;
}

/** What one step of retention took from the store; `blobs` are the files no row needs any more. */
export interface Released {
  readonly tasks: readonly string[];
  /** Hashes whose files may go: the rows that needed them are gone or past their retention. */
  readonly blobs: readonly string[];
}

/**
 * The store's side of retention (issue 10): which finished tasks' files and records are due, and
 * their removal. Each call is one short transaction over at most `limit` tasks, so the API's
 * queries wait for one small batch at most (better-sqlite3 runs each query to its end). The
 * blobs a call releases are decided inside its transaction by `blobReferences`; deleting their
 * files is the caller's (BlobStore.removeUnlessNeeded), after the commit.
 */
export class RetentionStore {
  private readonly finished: TaskStatus[] = [...FINAL_TASK_STATUSES];

  constructor(
    private readonly db: Kysely<Database>,
    private readonly tasks: TaskStore,
    private readonly now: () => Date = () => new Date(),
    private readonly beforeWrite: () => Promise<void> = async () => {},
  ) {}

  /**
   * Marks up to `limit` finished tasks that ended before `cutoff` (ISO time) and still have
   * their files as having none (`files_deleted_at`), oldest first.
   */
  async expireFiles(cutoff: string, limit: number): Promise<Released> {
    await this.beforeWrite();
    const released = await this.db.transaction().execute(async (trx) => {
      const due = await trx
        .selectFrom("tasks")
        .select(["id", "audio_sha256", "video_sha256", "result_sha256"])
        .where("files_deleted_at", "is", null)
        .where("completed_at", "<", cutoff)
        .where(notIndexed("status"), "in", this.finished)
        .orderBy("completed_at")
        .limit(limit)
        // A retry taking one of them back to `pending` meanwhile either ends first (and the
        // task is no longer due) or waits for this to commit (and finds its files gone).
        .forUpdate()
        .execute();
      if (due.length === 0) return { tasks: [], blobs: [] };
      const ids = due.map((t) => t.id);
      await trx
        .updateTable("tasks")
        .set({ files_deleted_at: this.now().toISOString() })
        .where("id", "in", ids)
        .execute();
      return { tasks: ids, blobs: await this.unneeded(trx, due) };
    });
    this.tasks.invalidate(released.tasks);
    return released;
  }

  /** Ids of up to `limit` finished tasks that ended before `cutoff`, oldest first. */
  async recordsDue(cutoff: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom("tasks")
      .select("id")
      .where("completed_at", "<", cutoff)
      .where(notIndexed("status"), "in", this.finished)
      .orderBy("completed_at")
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Deletes the tasks among `ids` that are finished, with every row about them (attempts, events,
   * callbacks and their tries). A task that is live when the transaction runs is left alone and
   * not in the answer (a retry may have taken it back to `pending` since it was read).
   */
  async deleteFinished(ids: readonly string[]): Promise<Released> {
    if (ids.length === 0) return { tasks: [], blobs: [] };
    await this.beforeWrite();
    const released = await this.db.transaction().execute(async (trx) => {
      const doomed = await trx
        .selectFrom("tasks")
        .select([
          "id",
          "owner",
          "status",
          "audio_sha256",
          "video_sha256",
          "result_sha256",
          "files_deleted_at",
        ])
        .where("id", "in", ids)
        .where("status", "in", this.finished)
        .forUpdate()
        .execute();
      if (doomed.length === 0) return { tasks: [], blobs: [] };
      const gone = doomed.map((t) => t.id);
      await trx.deleteFrom("callback_tries").where("task_id", "in", gone).execute();
      await trx.deleteFrom("callbacks").where("task_id", "in", gone).execute();
      await trx.deleteFrom("events").where("task_id", "in", gone).execute();
      await removeFromMachineTotals(trx, gone);
      await trx.deleteFrom("attempts").where("task_id", "in", gone).execute();
      await trx.deleteFrom("tasks").where("id", "in", gone).execute();
      await addToTaskTotals(
        trx,
        doomed.map((t) => ({ owner: t.owner, status: t.status, n: -1 })),
      );
      // Blobs of tasks whose files were already released were decided then.
      const holding = doomed.filter((t) => t.files_deleted_at === null);
      return { tasks: gone, blobs: await this.unneeded(trx, holding) };
    });
    this.tasks.invalidate(released.tasks);
    return released;
  }

  /** Of `shas`, those no row needs; measured facts of such blobs go with them. */
  async unneededOf(shas: readonly string[]): Promise<string[]> {
    const needed = await blobReferences(this.db, shas);
    return shas.filter((sha) => !needed.has(sha));
  }

  /** Forgets the media facts of blobs that are gone (they are measured again if uploaded again). */
  async forgetFacts(shas: readonly string[]): Promise<void> {
    if (shas.length === 0) return;
    await this.beforeWrite();
    await this.db.deleteFrom("media_facts").where("sha256", "in", shas).execute();
  }

  /**
   * Up to `limit` media facts measured before `before` (ISO time), in hash order after `after`:
   * the orphan sweep's walk over facts whose blob may never have been kept (a refused upload).
   */
  async factsPage(after: string, before: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom("media_facts")
      .select("sha256")
      .where("sha256", ">", after)
      .where("created_at", "<", before)
      .orderBy("sha256")
      .limit(limit)
      .execute();
    return rows.map((r) => r.sha256);
  }

  /** The blobs of `released` tasks that no remaining row needs; their facts are deleted with them. */
  private async unneeded(
    trx: Transaction<Database>,
    released: readonly { audio_sha256: string; video_sha256: string; result_sha256: string | null }[],
  ): Promise<string[]> {
    const candidates = new Set<string>();
    for (const t of released) {
      // A text task that was never spoken has no audio file (schema.ts, `speech`).
      if (t.audio_sha256) candidates.add(t.audio_sha256);
      candidates.add(t.video_sha256);
      if (t.result_sha256) candidates.add(t.result_sha256);
    }
    const needed = await blobReferences(trx, candidates);
    const free = [...candidates].filter((sha) => !needed.has(sha));
    if (free.length > 0) await trx.deleteFrom("media_facts").where("sha256", "in", free).execute();
    return free;
  }
}
