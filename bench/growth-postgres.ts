import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { openPostgres } from "../src/store/postgres.js";
import type { Seeded, SeedMedia, SeedPlan } from "./growth-store.js";

/**
 * The growth benchmark's queues on PostgreSQL (`--store`, issue 13), as growth-store.ts makes them
 * on SQLite: a database of its own on the machine's server (127.0.0.1:5432, user postgres, trust
 * auth, as the tests use it), the product's migrations, then one INSERT … SELECT over
 * generate_series. Queues only (pending tasks and their events): what the dispatch runs need.
 */

/** Migrates the database at `url`, fills it with `plan`'s queue, and puts the blobs in `dataDir`. */
export async function seedPostgres(
  url: string,
  dataDir: string,
  plan: SeedPlan,
  media: SeedMedia,
): Promise<Seeded> {
  if (plan.finished > 0) throw new Error("the PostgreSQL seed makes queues only");
  const t0 = performance.now();
  const migrated = await openPostgres(url);
  await migrated.destroy();
  for (const blob of [media.audio, media.video, media.result]) {
    const dir = join(dataDir, "blobs", blob.sha256.slice(0, 2));
    await mkdir(dir, { recursive: true });
    await copyFile(blob.path, join(dir, blob.sha256));
  }
  const total = plan.queue.reduce((n, group) => n + group.count, 0);
  const now = Date.now();
  const from = (now - 50 * 60_000) / 1000;
  const step = total > 0 ? (49 * 60) / total : 0;
  let upTo = 0;
  const seconds = plan.queue.map((group) => {
    upTo += group.count;
    return `when i <= ${upTo} then ${Number(group.audioSeconds)}`;
  });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("begin");
    await client.query(
      `insert into tasks (id, seq, status, description, callback_url, priority, options, audio_sha256,
        audio_name, audio_bytes, audio_duration, video_sha256, video_name, video_bytes, created_at, updated_at,
        progress, attempts)
      select gen_random_uuid()::text, i, 'pending', case when i % 3 = 0 then 'order ' || i end, null, 0, '{}',
        $1, $2, $3, case ${seconds.join(" ")} end, $4, $5, $6, c, c, 0, 0
      from (select i, to_char(to_timestamp($7::float8 + i * $8::float8) at time zone 'UTC',
        'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as c from generate_series(1, $9::int) i) g`,
      [
        media.audio.sha256,
        media.audio.name,
        media.audio.bytes,
        media.video.sha256,
        media.video.name,
        media.video.bytes,
        from,
        step,
        total,
      ],
    );
    // The arrival numbers were given here: the identity goes on from the last.
    await client.query("select setval(pg_get_serial_sequence('tasks', 'seq'), greatest($1::int, 1))", [
      total,
    ]);
    await client.query(
      `insert into events (task_id, at, type, from_status, to_status, message)
      select t.id, t.created_at, k.type, null, case k.n when 2 then 'pending' end,
        case k.n when 1 then 'audio ' || t.audio_name || ', video ' || t.video_name else 'waiting for a free machine' end
      from tasks t cross join (values (1, 'created'), (2, 'queued')) k(n, type) order by t.seq, k.n`,
    );
    await client.query(
      `insert into task_totals (owner, status, n)
      select coalesce(owner, ''), status, count(*) from tasks group by coalesce(owner, ''), status`,
    );
    await client.query("commit");
    await client.query("analyze");
    const count = async (table: string) =>
      Number((await client.query<{ n: string }>(`select count(*) as n from ${table}`)).rows[0]?.n ?? 0);
    const size = await client.query<{ n: string }>("select pg_database_size(current_database()) as n");
    return {
      tasks: await count("tasks"),
      events: await count("events"),
      attempts: await count("attempts"),
      seconds: (performance.now() - t0) / 1000,
      bytes: Number(size.rows[0]?.n ?? 0),
    };
  } finally {
    await client.end();
  }
}
