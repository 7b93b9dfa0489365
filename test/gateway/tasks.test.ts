import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Task } from "../../src/client/index.js";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { run } from "../helpers/processes.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { until } from "../helpers/until.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

describe("tasks through an embedded gateway", () => {
  let gateway: Gateway;
  let dir: string;
  let audio: string;
  let video: string;
  let receiver: Receiver;

  beforeAll(async () => {
    dir = await tempDir();
    audio = join(dir, "speech.m4a");
    video = join(dir, "person.mp4");
    await makeAudio(audio, { seconds: 1.5 });
    await makeVideo(video, { seconds: 1 });
    gateway = await startTestGateway();
    // The first callback POST fails, so delivery must retry and still keep the order.
    receiver = await startReceiver((n) => (n === 0 ? 500 : 200));
  });

  afterAll(async () => {
    await gateway.close();
    await receiver.close();
    await removeDir(gateway.dataDir);
    await removeDir(dir);
  });

  const create = async (extra: Record<string, string> = {}): Promise<Task> => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio_file: { path: audio }, video_file: { path: video }, ...extra }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Task;
  };
  const get = async (id: string): Promise<Task> =>
    (await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as Task;

  it("POST /tasks answers pending at once, then the task completes with every field filled", async () => {
    const created = await create({ description: "hello" });
    expect(created.status).toBe("pending");
    expect(created.description).toBe("hello");
    expect(Date.parse(created.created_at)).not.toBeNaN();
    const done = await until(async () => {
      const t = await get(created.task_id);
      return t.status === "completed" && t;
    });
    expect(done.machine).toBe("embedded");
    expect(done.progress).toBe(100);
    expect(done.error_message).toBeNull();
    expect(Date.parse(done.started_at ?? "")).toBeGreaterThanOrEqual(Date.parse(done.created_at));
    expect(Date.parse(done.completed_at ?? "")).toBeGreaterThanOrEqual(Date.parse(done.started_at ?? ""));
    expect(done.result_url).toBe(`${gateway.url}/tasks/${created.task_id}/result`);

    const res = await fetch(done.result_url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("video/mp4");
    const bytes = Buffer.from(await res.arrayBuffer());
    const saved = join(dir, "result.mp4");
    await import("node:fs/promises").then((fs) => fs.writeFile(saved, bytes));
    expect(Math.abs((await probe(saved)).durationSec - 1.5)).toBeLessThan(0.2);

    const part = await fetch(done.result_url, { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 10-19/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(10, 20));
  });

  it("the events log has one row per step, in order, with timestamps", async () => {
    const t = await create();
    await until(async () => (await get(t.task_id)).status === "completed");
    const { events } = (await (await fetch(`${gateway.url}/tasks/${t.task_id}/events`)).json()) as {
      events: Array<{ type: string; at: string; machine: string | null; message: string | null }>;
    };
    const types = events.map((e) => e.type);
    expect(types.slice(0, 3)).toEqual(["created", "queued", "dispatched"]);
    expect(types.at(-1)).toBe("completed");
    expect(events.find((e) => e.type === "dispatched")?.message).toContain("embedded");
    for (const e of events) expect(Date.parse(e.at)).not.toBeNaN();
  });

  it("callback_url gets every status change in order, even after answering 500 once", async () => {
    const t = await create({ callback_url: receiver.url });
    await until(() => receiver.received.filter((r) => r.status === 200).length >= 3, 20_000);
    const delivered = receiver.received.filter((r) => r.status === 200).map((r) => r.body);
    expect(delivered.map((b) => b.status)).toEqual(["pending", "processing", "completed"]);
    expect(receiver.received[0]?.status).toBe(500);
    expect(receiver.received[0]?.body.status).toBe("pending");
    for (const b of delivered) {
      expect(b.task_id).toBe(t.task_id);
      expect(b).toHaveProperty("completed_at");
      expect(b).toHaveProperty("error_message");
    }
    expect((await get(t.task_id)).status).toBe("completed");
  });

  it("GET /tasks pages newest first with the total, and filters by status", async () => {
    const page = (await (await fetch(`${gateway.url}/tasks?limit=2`)).json()) as {
      tasks: Task[];
      total: number;
    };
    const all = await gateway.store.listTasks({ limit: 100, offset: 0 });
    expect(page.total).toBe(all.total);
    expect(page.tasks.map((t) => t.task_id)).toEqual(all.tasks.slice(0, 2).map((t) => t.id));
    expect(Date.parse(page.tasks[0]?.created_at ?? "")).toBeGreaterThanOrEqual(
      Date.parse(page.tasks[1]?.created_at ?? ""),
    );
    const second = (await (await fetch(`${gateway.url}/tasks?limit=2&offset=2`)).json()) as {
      tasks: Task[];
    };
    expect(second.tasks[0]?.task_id).toBe(all.tasks[2]?.id);
    const failed = (await (await fetch(`${gateway.url}/tasks?status=failed`)).json()) as { total: number };
    expect(failed.total).toBe(0);
    // The cursor gives the same next page as the offset, read from the index at any depth.
    const first = (await (await fetch(`${gateway.url}/tasks?limit=2`)).json()) as {
      next_before: number | null;
    };
    expect(first.next_before).toEqual(expect.any(Number));
    const viaCursor = (await (
      await fetch(`${gateway.url}/tasks?limit=2&before=${first.next_before}`)
    ).json()) as {
      tasks: Task[];
    };
    expect(viaCursor.tasks.map((t) => t.task_id)).toEqual(second.tasks.map((t) => t.task_id));
    const last = (await (await fetch(`${gateway.url}/tasks?limit=500`)).json()) as {
      next_before: number | null;
    };
    expect(last.next_before).toBeNull();
    for (const status of ["completed", "pending"]) {
      const plan = await sql<{
        detail: string;
      }>`explain query plan select * from tasks where status = ${status} order by seq desc limit 50`.execute(
        gateway.store.db,
      );
      const details = plan.rows.map((r) => r.detail).join("; ");
      // A page of one status comes straight off an index: no sort of every task of that status.
      expect(details).toContain("tasks_status_seq");
      expect(details).not.toContain("TEMP B-TREE");
    }
  });

  it("POST /tasks/sync answers with the MP4 and its task id", async () => {
    const res = await fetch(`${gateway.url}/tasks/sync`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video }, description: "sync" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("video/mp4");
    const id = res.headers.get("x-task-id") ?? "";
    const out = join(dir, "sync.mp4");
    await writeFile(out, Buffer.from(await res.arrayBuffer()));
    const media = await probe(out);
    expect(media.video).toBeDefined();
    expect(Math.abs(media.durationSec - 1.5)).toBeLessThan(0.2);
    expect(((await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as Task).status).toBe("completed");
  });

  it("the TypeScript example runs as the README says (npx tsx examples/client.ts …)", async () => {
    const out = join(dir, "example.mp4");
    const res = await run("npx", ["tsx", "examples/client.ts", audio, video, out], {
      cwd: ROOT,
      env: { MULTI_HEYGEM_URL: gateway.url },
    });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/task [0-9a-f-]{36} created/);
    expect(res.stdout).toContain(`saved ${out}`);
    const media = await probe(out);
    expect(media.video).toBeDefined();
    expect(Math.abs(media.durationSec - 1.5)).toBeLessThan(0.2);
  });

  it("a sync client that hangs up does not kill its task", async () => {
    const abort = new AbortController();
    const pending = fetch(`${gateway.url}/tasks/sync`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video }, description: "walk away" }),
      signal: abort.signal,
    }).catch(() => undefined);
    const task = await until(async () => {
      const { tasks } = await gateway.store.listTasks({ limit: 1, offset: 0 });
      return tasks[0]?.description === "walk away" && tasks[0];
    });
    abort.abort();
    await pending;
    await until(async () => (await get(task.id)).status === "completed");
    expect((await fetch(`${gateway.url}/tasks/${task.id}/result`)).status).toBe(200);
  });

  it("the result of a task that is not completed → 409", async () => {
    const t = await create();
    const res = await fetch(`${gateway.url}/tasks/${t.task_id}/result`);
    // It may already be done on a fast machine; only a not-yet-completed task must answer 409.
    if ((await get(t.task_id)).status !== "completed" || res.status !== 200) {
      expect(res.status).toBe(409);
      expect(((await res.json()) as { error: string }).error).toBe("TASK_NOT_COMPLETED");
    }
    await until(async () => (await get(t.task_id)).status === "completed");
  });
});
