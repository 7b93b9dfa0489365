import {
  type Kysely,
  type Migration,
  type MigrationProvider,
  type MigrationResultSet,
  Migrator,
  sql,
} from "kysely";
import { isPostgres, PostgresDdl } from "./dialect.js";
import type { Database } from "./schema.js";

/**
 * Migrations live in code (not files found at run time) so the compiled package carries them.
 * Append only: a migration that has shipped is never edited.
 *
 * They are written once, in SQLite's types (`integer`, `real`, `autoIncrement()`), and with
 * Kysely's builder only; on PostgreSQL they run through `PostgresDdl` (dialect.ts), which reads
 * those types as `bigint`, `double precision` and identities, and then through the step of the
 * same name in POSTGRES_AFTER, if any. A new table with an arrival number (`seq`, filled by
 * `nextSeq`) adds its identity there.
 */
const migrations: Record<string, Migration> = {
  "0001_tasks_attempts_events": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("tasks")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("seq", "integer", (c) => c.notNull().unique())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("description", "text")
        .addColumn("callback_url", "text")
        .addColumn("priority", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("options", "text", (c) => c.notNull())
        .addColumn("audio_sha256", "text", (c) => c.notNull())
        .addColumn("audio_name", "text", (c) => c.notNull())
        .addColumn("audio_bytes", "integer", (c) => c.notNull())
        .addColumn("audio_duration", "real", (c) => c.notNull())
        .addColumn("video_sha256", "text", (c) => c.notNull())
        .addColumn("video_name", "text", (c) => c.notNull())
        .addColumn("video_bytes", "integer", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("started_at", "text")
        .addColumn("completed_at", "text")
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addColumn("machine", "text")
        .addColumn("progress", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("error_message", "text")
        .addColumn("error_kind", "text")
        .addColumn("current_attempt", "text")
        .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("result_sha256", "text")
        .addColumn("result_bytes", "integer")
        .execute();
      await db.schema
        .createIndex("tasks_status_order")
        .on("tasks")
        .columns(["status", "priority", "seq"])
        .execute();

      await db.schema
        .createTable("attempts")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("task_id", "text", (c) => c.notNull().references("tasks.id"))
        .addColumn("machine", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("ended_at", "text")
        .addColumn("error_kind", "text")
        .addColumn("error_message", "text")
        .execute();
      await db.schema.createIndex("attempts_task").on("attempts").column("task_id").execute();
      await db.schema.createIndex("attempts_status").on("attempts").column("status").execute();

      await db.schema
        .createTable("events")
        .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("task_id", "text", (c) => c.notNull().references("tasks.id"))
        .addColumn("at", "text", (c) => c.notNull())
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("from_status", "text")
        .addColumn("to_status", "text")
        .addColumn("machine", "text")
        .addColumn("attempt_id", "text")
        .addColumn("progress", "integer")
        .addColumn("message", "text")
        .execute();
      await db.schema.createIndex("events_task").on("events").columns(["task_id", "id"]).execute();

      await db.schema
        .createTable("callbacks")
        .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("task_id", "text", (c) => c.notNull().references("tasks.id"))
        .addColumn("event_id", "integer", (c) => c.notNull())
        .addColumn("url", "text", (c) => c.notNull())
        .addColumn("payload", "text", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("tries", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("next_at", "text", (c) => c.notNull())
        .addColumn("last_error", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("callbacks_due").on("callbacks").columns(["state", "next_at"]).execute();
    },
  },
  "0002_fleet": {
    async up(db: Kysely<unknown>) {
      // Seconds the engine worked on the attempt, as the worker measured it: the speed model's input.
      await db.schema.alterTable("attempts").addColumn("run_seconds", "real").execute();
      await db.schema.createIndex("attempts_machine").on("attempts").columns(["machine", "status"]).execute();
      await db.schema
        .createTable("machine_flags")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("draining", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
    },
  },
  "0003_media_facts": {
    async up(db: Kysely<unknown>) {
      // What a blob's media is (streams, duration), by content: measured once, however often the
      // same template is uploaded again (issue 8).
      await db.schema
        .createTable("media_facts")
        .addColumn("sha256", "text", (c) => c.primaryKey())
        .addColumn("facts", "text", (c) => c.notNull())
        .addColumn("source", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
    },
  },
  "0004_task_owner": {
    async up(db: Kysely<unknown>) {
      // The API key (by name) that created the task: a submit key sees only its own (issue 9).
      // Null for tasks created without keys, which only admin keys see once keys are configured.
      await db.schema.alterTable("tasks").addColumn("owner", "text").execute();
      await db.schema.createIndex("tasks_owner").on("tasks").columns(["owner", "seq"]).execute();
    },
  },
  "0005_callback_deliveries": {
    async up(db: Kysely<unknown>) {
      // Standard Webhooks' webhook-id: one per delivery, the same on each of its tries (issue 9).
      // Rows from before have none; the sender gives them one on their next try.
      await db.schema.alterTable("callbacks").addColumn("webhook_id", "text").execute();
      // Every try of every delivery, for GET /tasks/{id}/callbacks.
      await db.schema
        .createTable("callback_tries")
        .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("callback_id", "integer", (c) => c.notNull().references("callbacks.id"))
        .addColumn("task_id", "text", (c) => c.notNull())
        .addColumn("at", "text", (c) => c.notNull())
        .addColumn("duration_ms", "integer", (c) => c.notNull())
        .addColumn("http_status", "integer")
        .addColumn("error", "text")
        .execute();
      await db.schema
        .createIndex("callback_tries_task")
        .on("callback_tries")
        .columns(["task_id", "id"])
        .execute();
      await db.schema.createIndex("callbacks_task").on("callbacks").columns(["task_id", "id"]).execute();
    },
  },
  "0007_retention": {
    async up(db: Kysely<unknown>) {
      // When a task's blobs were deleted (retention or the sweep behind DELETE): its result then
      // answers 410 instead of pointing at a file that is gone (issue 10).
      await db.schema.alterTable("tasks").addColumn("files_deleted_at", "text").execute();
      const keptFiles = sql<boolean>`files_deleted_at is null`;
      // The sweep's question, "whose files are due?", read from the finished tasks that still
      // have files only: the ones already swept (kept for --retention-rows) are not in it.
      await db.schema
        .createIndex("tasks_files_due")
        .on("tasks")
        .column("completed_at")
        .where(keptFiles)
        .execute();
      // "Does any task still need this blob?" (blob-references.ts), one probe per column.
      for (const column of ["audio_sha256", "video_sha256", "result_sha256"]) {
        await db.schema
          .createIndex(`tasks_${column.replace("_sha256", "")}_blob`)
          .on("tasks")
          .column(column)
          .where(keptFiles)
          .execute();
      }
      // Records past --retention-rows.
      await db.schema.createIndex("tasks_completed").on("tasks").column("completed_at").execute();
    },
  },
  "0009_avatars": {
    async up(db: Kysely<unknown>) {
      // A template video uploaded once and named, so tasks send only their audio (issue 12). Rows
      // reference the blob by hash like tasks do; blob-references.ts counts them.
      await db.schema
        .createTable("avatars")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("seq", "integer", (c) => c.notNull().unique())
        .addColumn("owner", "text")
        .addColumn("name", "text")
        .addColumn("sha256", "text", (c) => c.notNull())
        .addColumn("file_name", "text", (c) => c.notNull())
        .addColumn("bytes", "integer", (c) => c.notNull())
        .addColumn("duration", "real", (c) => c.notNull())
        .addColumn("width", "integer", (c) => c.notNull())
        .addColumn("height", "integer", (c) => c.notNull())
        .addColumn("fps", "real", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      // "Does an avatar still need this blob?" (blob-references.ts).
      await db.schema.createIndex("avatars_blob").on("avatars").column("sha256").execute();
      await db.schema.createIndex("avatars_owner").on("avatars").columns(["owner", "seq"]).execute();
      // The avatar a task was made from; null for tasks that uploaded their video.
      await db.schema.alterTable("tasks").addColumn("avatar_id", "text").execute();
      // "Does a live task use this avatar?" (DELETE /avatars/{id}).
      await db.schema
        .createIndex("tasks_avatar")
        .on("tasks")
        .columns(["avatar_id", "status"])
        .where(sql<boolean>`avatar_id is not null`)
        .execute();
    },
  },
  "0010_tasks_by_status": {
    async up(db: Kysely<unknown>) {
      // A page of GET /tasks?status=… reads newest first within one status: with only
      // (status, priority, seq) it sorted every task of that status, ~1 s at a million rows.
      await db.schema.createIndex("tasks_status_seq").on("tasks").columns(["status", "seq"]).execute();
    },
  },
  "0011_voices_and_text": {
    async up(db: Kysely<unknown>) {
      // A cloned voice (issue 12): its reference recording is a blob the gateway keeps, so any
      // machine can prepare the voice; blob-references.ts counts these rows like avatars.
      await db.schema
        .createTable("voices")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("seq", "integer", (c) => c.notNull().unique())
        .addColumn("owner", "text")
        .addColumn("name", "text")
        .addColumn("lang", "text", (c) => c.notNull())
        .addColumn("sha256", "text", (c) => c.notNull())
        .addColumn("file_name", "text", (c) => c.notNull())
        .addColumn("bytes", "integer", (c) => c.notNull())
        .addColumn("duration", "real", (c) => c.notNull())
        .addColumn("reference_text", "text")
        .addColumn("avatar_id", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("voices_blob").on("voices").column("sha256").execute();
      await db.schema.createIndex("voices_owner").on("voices").columns(["owner", "seq"]).execute();
      // A text task: what to say and how (JSON); null for tasks that uploaded their audio.
      await db.schema.alterTable("tasks").addColumn("speech", "text").execute();
      // The voice a text task speaks in; null for the machine's own voice and for audio tasks.
      await db.schema.alterTable("tasks").addColumn("voice_id", "text").execute();
      // "Does a live task use this voice?" (DELETE /voices/{id}).
      await db.schema
        .createIndex("tasks_voice")
        .on("tasks")
        .columns(["voice_id", "status"])
        .where(sql<boolean>`voice_id is not null`)
        .execute();
    },
  },
  "0012_gateway_coordination": {
    async up(db: Kysely<unknown>) {
      // Several gateways on one PostgreSQL database (issue 13): the one that dispatches is elected
      // (gateway/coordination/leadership.ts), and each term gets a higher epoch here. A slot is
      // claimed only by the gateway whose epoch is still the newest: a deposed dispatcher that has
      // not yet noticed it was deposed can place nothing (TaskStore.startAttempt).
      await db.schema
        .createTable("dispatcher_term")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("epoch", "integer", (c) => c.notNull())
        .addColumn("gateway", "text", (c) => c.notNull())
        .addColumn("started_at", "text", (c) => c.notNull())
        .execute();
      // What the dispatching gateway knows of the fleet (GET /machines), published for the others,
      // which do not run its attempts and so cannot know each machine's load themselves.
      await db.schema
        .createTable("fleet_view")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("gateway", "text", (c) => c.notNull())
        .addColumn("epoch", "integer", (c) => c.notNull())
        .addColumn("published_at", "text", (c) => c.notNull())
        .addColumn("machines", "text", (c) => c.notNull())
        .execute();
    },
  },
  "0013_queue_order": {
    async up(db: Kysely<unknown>) {
      // The queue goes out by priority, highest first, then by arrival: (status, priority, seq)
      // read backwards gives the priorities in that order but each one's tasks newest first, so
      // every scheduling pass sorted all the pending tasks of the top priority to take the first
      // few (issue 14: ~6 ms a pass per 10k waiting). In the queue's own order, the pass reads
      // just the tasks it places. It serves all that (status, priority, seq) served, which goes.
      await db.schema
        .createIndex("tasks_queue")
        .on("tasks")
        .columns(["status", "priority desc", "seq"])
        .execute();
      await db.schema.dropIndex("tasks_status_order").execute();
    },
  },
  "0014_attempts_by_end": {
    async up(db: Kysely<unknown>) {
      // The speed model is seeded at start (and at each dispatching term) from the latest runs
      // (machine-store.ts, latestRuns): with (status) alone that sorted every successful attempt
      // ever kept, ~1 s at a million (issue 14). It serves all that (status) served, which goes.
      await db.schema.createIndex("attempts_ended").on("attempts").columns(["status", "ended_at"]).execute();
      await db.schema.dropIndex("attempts_status").execute();
    },
  },
  "0015_machine_totals": {
    async up(db: Kysely<unknown>) {
      // Each machine's succeeded and failed attempts, kept as they end (machine-totals.ts):
      // GET /machines counted them from every attempt ever kept (issue 14). Started from the
      // attempts there are.
      await db.schema
        .createTable("machine_totals")
        .addColumn("machine", "text", (c) => c.primaryKey())
        .addColumn("done", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("failed", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      await sql`insert into machine_totals (machine, done, failed)
        select machine, sum(case when status = 'succeeded' then 1 else 0 end),
          sum(case when status = 'failed' then 1 else 0 end)
        from attempts where status in ('succeeded', 'failed') group by machine`.execute(db);
    },
  },
  "0016_task_totals": {
    async up(db: Kysely<unknown>) {
      // How many tasks each owner has in each status, kept as tasks change (task-totals.ts):
      // GET /tasks's total and the metrics counted the tasks each time (issue 14). Started from
      // the tasks there are; '' is the owner of tasks created without API keys.
      await db.schema
        .createTable("task_totals")
        .addColumn("owner", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("n", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("task_totals_pk", ["owner", "status"])
        .execute();
      await sql`insert into task_totals (owner, status, n)
        select coalesce(owner, ''), status, count(*) from tasks group by coalesce(owner, ''), status`.execute(
        db,
      );
    },
  },
};

/**
 * What PostgreSQL runs after the migration of the same name. Arrival numbers are identities
 * there, so that transactions inserting side by side never draw the same one (dialect.ts,
 * `nextSeq`); SQLite, one writer at a time, counts them itself.
 */
const POSTGRES_AFTER: Record<string, (db: Kysely<unknown>) => Promise<void>> = {
  "0001_tasks_attempts_events": (db) => seqIdentity(db, "tasks"),
  "0009_avatars": (db) => seqIdentity(db, "avatars"),
  "0011_voices_and_text": (db) => seqIdentity(db, "voices"),
};

async function seqIdentity(db: Kysely<unknown>, table: string): Promise<void> {
  await sql`alter table ${sql.table(table)} alter column seq add generated by default as identity`.execute(
    db,
  );
}

const sqliteMigrations: MigrationProvider = { getMigrations: async () => migrations };

const postgresMigrations: MigrationProvider = {
  getMigrations: async () =>
    Object.fromEntries(
      Object.entries(migrations).map(([name, migration]) => {
        const after = POSTGRES_AFTER[name];
        const up = async (db: Kysely<unknown>) => {
          await migration.up(db);
          await after?.(db);
        };
        return [name, { up }];
      }),
    ),
};

/**
 * Brings the store's schema up to date. Kysely's Migrator holds a lock while it works: on
 * PostgreSQL a session advisory lock, with every pending migration in one transaction, so gateways
 * starting together on one database migrate once (the others wait, then find nothing to do). A
 * SQLite file has one gateway (the data dir's lock), which migrates on its one connection.
 */
export async function migrateToLatest(db: Kysely<Database>): Promise<MigrationResultSet> {
  const migrator = isPostgres(db)
    ? new Migrator({ db: db.withPlugin(new PostgresDdl()), provider: postgresMigrations })
    : new Migrator({ db, provider: sqliteMigrations });
  return migrator.migrateToLatest();
}
