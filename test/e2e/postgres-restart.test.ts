import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

interface TaskView {
  task_id: string;
  status: string;
  error_message: string | null;
}

/**
 * `npm start` with `--store postgres://…` (issue 13): the gateway is a real child process with its
 * embedded ffmpeg worker, killed with SIGKILL while it renders; the next one, on the same database
 * and data dir, finishes the task, once.
 */
describe.skipIf(!postgresAvailable)("a gateway on PostgreSQL, killed mid-task", () => {
  let dir: string;
  let database: TestDatabase;

  beforeEach(async () => {
    dir = await tempDir("mh-pg-e2e-");
    database = await createTestDatabase();
  });
  afterEach(async () => {
    await killAll();
    await database.drop();
    await removeDir(dir);
  });

  // cwd has no config/machines.json: the gateway runs its embedded worker.
  const startGateway = () =>
    startGatewayProcess(["--store", database.url, "--data-dir", join(dir, "data")], { cwd: dir });
  const task = async (url: string, id: string) =>
    (await (await fetch(`${url}/tasks/${id}`)).json()) as TaskView;

  it("completes the task after a restart on the same database, exactly once, as a real MP4", async () => {
    const audio = join(dir, "speech.wav");
    const video = join(dir, "person.mp4");
    await makeAudio(audio, { seconds: 40 });
    await makeVideo(video, { seconds: 2, width: 640, height: 480 });

    let gateway: Started = await startGateway();
    expect(gateway.lines.some((l) => l.includes("store: PostgreSQL"))).toBe(true);
    // The seed's form: audio, video and a description, as its clients send them.
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video }, description: "survives" }),
    });
    expect(res.status).toBe(200);
    const { task_id: id } = (await res.json()) as { task_id: string };
    await until(async () => (await task(gateway.url, id)).status === "processing", 30_000, {
      intervalMs: 20,
    });
    await gateway.kill();

    const client = new pg.Client(database.url);
    await client.connect();
    try {
      const atKill = await client.query<{ status: string }>("select status from tasks where id = $1", [id]);
      expect(atKill.rows[0]?.status).toBe("processing");

      gateway = await startGateway();
      const done = await until(
        async () => {
          const t = await task(gateway.url, id);
          if (t.status === "failed") throw new Error(`task failed: ${t.error_message}`);
          return t.status === "completed" && t;
        },
        90_000,
        { intervalMs: 200 },
      );
      expect(done).toMatchObject({ task_id: id, status: "completed" });

      const mp4 = join(dir, "result.mp4");
      const result = await fetch(`${gateway.url}/tasks/${id}/result`);
      expect(result.status).toBe(200);
      await writeFile(mp4, Buffer.from(await result.arrayBuffer()));
      const info = await probe(mp4);
      expect(info.formatName).toContain("mp4");
      expect(info.video).toBeDefined();
      expect(info.durationSec).toBeCloseTo(40, 0);

      // Exactly once: one completion, one succeeded attempt, one result; never two live attempts.
      const events = await client.query<{ to_status: string | null }>(
        "select to_status from events where task_id = $1 order by id",
        [id],
      );
      expect(events.rows.filter((e) => e.to_status === "completed")).toHaveLength(1);
      const attempts = await client.query<{ status: string }>(
        "select status from attempts where task_id = $1 order by created_at",
        [id],
      );
      expect(attempts.rows.filter((a) => a.status === "succeeded")).toHaveLength(1);
      expect(attempts.rows.filter((a) => a.status === "dispatching" || a.status === "running")).toEqual([]);
      const rows = await client.query<{ n: string }>("select count(*) as n from tasks");
      expect(Number(rows.rows[0]?.n)).toBe(1);
    } finally {
      await client.end();
    }
  });
});
