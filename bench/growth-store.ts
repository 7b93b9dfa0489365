import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import SQLite from "better-sqlite3";
import { openSqlite } from "../src/store/database.js";

/**
 * A gateway's SQLite store filled with a million tasks in seconds, for the growth benchmark:
 * through the HTTP API that would take hours. The schema is the product's own (its migrations run
 * first, through `openSqlite`), then one transaction of `INSERT … SELECT` over a recursive count
 * writes rows shaped like the ones the gateway writes: tasks, their attempts and their events, in
 * arrival order, with every column a real row has. All tasks share one audio, one template video
 * and one result, real files put in the data dir's blob store, so any of them can be dispatched.
 */

/** A real file in the blob store, as the rows reference it. */
export interface SeedBlob {
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly name: string;
}

export interface SeedMedia {
  readonly audio: SeedBlob & { readonly duration: number };
  readonly video: SeedBlob;
  readonly result: SeedBlob;
}

export interface SeedPlan {
  /**
   * Finished tasks (older): of each 200, 4 failed (the input's fault), 1 cancelled while pending,
   * the rest completed; spread over the last 29 days, the files of those older than the default
   * `--retention` (7 days) already released, as the sweep leaves them.
   */
  readonly finished: number;
  /**
   * Pending tasks (the newest), created over the last 50 minutes, in groups in queue order: a
   * group's tasks say their audio lasts `audioSeconds` (the real file is the shared one), which is
   * how long a simulate worker takes over them (× its time scale).
   */
  readonly queue: ReadonlyArray<{ readonly count: number; readonly audioSeconds: number }>;
}

export interface Seeded {
  readonly tasks: number;
  readonly events: number;
  readonly attempts: number;
  readonly seconds: number;
  /** The SQLite file's size once checkpointed. */
  readonly bytes: number;
}

const DAY = 86_400_000;
const SQLITE_FILE = "multi-heygem.db";

/** A file of the bench's media kit, described as a blob (hashed as the gateway hashes uploads). */
export async function seedBlob(path: string, name = basename(path)): Promise<SeedBlob> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { path, sha256: hash.digest("hex"), bytes: (await stat(path)).size, name };
}

/** Fills `<dataDir>/multi-heygem.db` (created here, through the product's migrations) and its blobs. */
export async function seedStore(dataDir: string, plan: SeedPlan, media: SeedMedia): Promise<Seeded> {
  const t0 = performance.now();
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, SQLITE_FILE);
  const migrated = await openSqlite(file);
  await migrated.destroy();
  for (const blob of [media.audio, media.video, media.result]) {
    const dir = join(dataDir, "blobs", blob.sha256.slice(0, 2));
    await mkdir(dir, { recursive: true });
    await copyFile(blob.path, join(dir, blob.sha256));
  }

  const db = new SQLite(file);
  try {
    // Only while seeding: nothing here needs to survive a crash, and the indexes fit in memory.
    // The rollback journal in memory rather than WAL: each page is written once, not twice.
    db.pragma("journal_mode = MEMORY");
    db.pragma("synchronous = OFF");
    db.pragma("cache_size = -1000000");
    db.pragma("temp_store = MEMORY");
    const pending = plan.queue.reduce((n, group) => n + group.count, 0);
    const now = Date.now();
    const finishedFrom = now - 29 * DAY;
    const finishedStep = plan.finished > 0 ? (28 * DAY) / plan.finished : 0;
    const pendingFrom = now - 50 * 60_000;
    const pendingStep = pending > 0 ? (49 * 60_000) / pending : 0;
    const params = {
      total: plan.finished + pending,
      finished: plan.finished,
      finishedFrom: finishedFrom / 1000,
      finishedStep: finishedStep / 1000,
      pendingFrom: pendingFrom / 1000,
      pendingStep: pendingStep / 1000,
      // Files released (files_deleted_at) of tasks finished more than 7 days ago, as the sweep does.
      releasedBefore: (now - 7 * DAY) / 1000,
      audioSha: media.audio.sha256,
      audioName: media.audio.name,
      audioBytes: media.audio.bytes,
      videoSha: media.video.sha256,
      videoName: media.video.name,
      videoBytes: media.video.bytes,
      resultSha: media.result.sha256,
      resultBytes: media.result.bytes,
    };
    db.transaction(() => {
      // The product's own indexes, made again from their SQL once the rows are in: one sort per
      // index costs less than keeping each up to date row by row.
      const indexes = db
        .prepare(
          "select name, sql from sqlite_master where type = 'index' and sql is not null and tbl_name in ('tasks', 'attempts', 'events')",
        )
        .all() as Array<{ name: string; sql: string }>;
      for (const index of indexes) db.exec(`drop index ${index.name}`);
      db.prepare(tasksSql(plan, media.audio.duration)).run(params);
      db.prepare(ATTEMPTS_SQL).run();
      db.prepare(EVENTS_SQL).run({ audioName: media.audio.name, videoName: media.video.name });
      for (const index of indexes) db.exec(index.sql);
      // What the store keeps counted as tasks change (migrations 0015 and 0016), counted once here.
      db.exec(TOTALS_SQL);
    })();
    db.pragma("journal_mode = WAL");
    const count = (table: string) =>
      (db.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n;
    const seeded = { tasks: count("tasks"), events: count("events"), attempts: count("attempts") };
    db.close();
    return { ...seeded, seconds: (performance.now() - t0) / 1000, bytes: (await stat(file)).size };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** ISO-8601 with milliseconds, as `Date.toISOString()` writes it, from seconds since the epoch. */
const iso = (seconds: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', ${seconds}, 'unixepoch')`;
/**
 * A version-4-shaped UUID from 32 hex digits `h`. The seed's count up in their first 12 digits (as
 * UUIDv7's time prefix does), the rest random: appending to the id indexes instead of inserting at
 * random places makes seeding a million tasks 1.6 times faster, and a lookup by id costs the same.
 */
const uuid = (h: string) =>
  `lower(substr(${h}, 1, 8) || '-' || substr(${h}, 9, 4) || '-4' || substr(${h}, 14, 3) || '-a' ||
  substr(${h}, 18, 3) || '-' || substr(${h}, 21, 12))`;

/** Task i's audio length: the shared file's for finished tasks, its group's for pending ones. */
function audioSeconds(plan: SeedPlan, audio: number): string {
  let upTo = plan.finished;
  const arms = plan.queue.map((group) => {
    if (!(Number.isFinite(group.audioSeconds) && group.audioSeconds > 0 && Number.isInteger(group.count)))
      throw new RangeError(`bad queue group ${JSON.stringify(group)}`);
    upTo += group.count;
    return `when i <= ${upTo} then ${group.audioSeconds}`;
  });
  return `case when i <= ${plan.finished} then ${audio} ${arms.join(" ")} end`;
}

// Times of task i: created at `c`; a finished one started 2 s later and ended 12 s later.
const tasksSql = (plan: SeedPlan, audio: number) => `
insert into tasks (id, seq, status, description, callback_url, priority, options, audio_sha256, audio_name,
  audio_bytes, audio_duration, video_sha256, video_name, video_bytes, created_at, started_at, completed_at,
  updated_at, machine, progress, error_message, error_kind, current_attempt, attempts, result_sha256,
  result_bytes, owner, files_deleted_at, avatar_id, speech, voice_id)
with recursive n(i) as (select 1 union all select i + 1 from n where i < :total),
shaped as (
  select i,
    case when i > :finished then 'pending' when i % 200 = 7 then 'cancelled'
      when i % 50 = 3 then 'failed' else 'completed' end as status,
    case when i > :finished then :pendingFrom + (i - :finished) * :pendingStep
      else :finishedFrom + i * :finishedStep end as c,
    printf('%012x', i) || hex(randomblob(10)) as h, printf('%012x', i) || hex(randomblob(10)) as a
  from n
)
select ${uuid("h")}, i, status,
  case when i % 3 = 0 then 'order ' || i end, null, 0, '{}',
  :audioSha, :audioName, :audioBytes, ${audioSeconds(plan, audio)}, :videoSha, :videoName, :videoBytes,
  ${iso("c")},
  case when status in ('completed', 'failed') then ${iso("c + 2")} end,
  case when status = 'pending' then null else ${iso("c + 12")} end,
  ${iso("case when status = 'pending' then c else c + 12 end")},
  case when status in ('completed', 'failed') then 'gpu-' || (i % 4 + 1) end,
  case when status = 'completed' then 100 else 0 end,
  case when status = 'failed' then 'the engine found no face in the video (frame 1)'
    when status = 'cancelled' then 'cancelled by the client' end,
  case when status = 'failed' then 'input' end,
  case when status in ('completed', 'failed') then ${uuid("a")} end,
  case when status in ('completed', 'failed') then 1 else 0 end,
  case when status = 'completed' then :resultSha end,
  case when status = 'completed' then :resultBytes end,
  null,
  case when status <> 'pending' and c + 12 < :releasedBefore then ${iso("c + 12 + 7 * 86400")} end,
  null, null, null
from shaped`;

const ATTEMPTS_SQL = `
insert into attempts (id, task_id, machine, status, created_at, ended_at, error_kind, error_message, run_seconds)
select current_attempt, id, machine, case when status = 'completed' then 'succeeded' else 'failed' end,
  started_at, completed_at, error_kind, error_message, case when status = 'completed' then 9.5 end
from tasks where current_attempt is not null order by seq`;

// The rows TaskStore writes: created + queued for every task, dispatched for those that ran, and
// the final one; in arrival order, as they would have been written.
const EVENTS_SQL = `
insert into events (task_id, at, type, from_status, to_status, machine, attempt_id, progress, message)
select t.id,
  case when k.n = 3 then t.started_at when k.n = 4 then t.completed_at else t.created_at end,
  case k.n when 1 then 'created' when 2 then 'queued' when 3 then 'dispatched' else t.status end,
  case k.n when 1 then null when 2 then null when 3 then 'pending'
    else case when t.status = 'cancelled' then 'pending' else 'processing' end end,
  case k.n when 1 then null when 2 then 'pending' when 3 then 'processing' else t.status end,
  case when k.n >= 3 then t.machine end,
  case when k.n >= 3 then t.current_attempt end,
  case when k.n = 4 and t.status = 'completed' then 100 end,
  case k.n when 1 then 'audio ' || :audioName || ' (' || printf('%.2f', t.audio_duration) || ' s), video ' || :videoName
    when 2 then 'waiting for a free machine'
    when 3 then 'attempt 1 dispatched to machine ' || t.machine
    else coalesce(t.error_message, 'result ' || t.result_bytes || ' bytes') end
from tasks t cross join (select 1 as n union all select 2 union all select 3 union all select 4) k
where k.n <= case t.status when 'pending' then 2 when 'cancelled' then 4 else 4 end
  and not (t.status = 'cancelled' and k.n = 3)
order by t.rowid, k.n`;

const TOTALS_SQL = `
insert into task_totals (owner, status, n)
select coalesce(owner, ''), status, count(*) from tasks group by coalesce(owner, ''), status;
insert into machine_totals (machine, done, failed)
select machine, sum(case when status = 'succeeded' then 1 else 0 end), sum(case when status = 'failed' then 1 else 0 end)
from attempts where status in ('succeeded', 'failed') group by machine;`;
