import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/** A gateway whose only machine is a worker agent in front of a GateEngine the test steers. */
describe("what the worker reports reaches the task", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let gateway: Gateway;
  let audio: string;
  let video: string;

  beforeEach(async () => {
    dir = await tempDir();
    audio = join(dir, "a.wav");
    video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({
        machines: [{ name: "gpu-1", host: "127.0.0.1", port: worker.port, max_concurrent: 1 }],
      }),
    );
    gateway = await startTestGateway({ config: machines, maxAttempts: "2" }, join(dir, "gateway"));
  });

  afterEach(async () => {
    await gateway.close();
    await worker.close();
    await removeDir(dir);
  });

  const post = async (route = "/tasks") =>
    fetch(`${gateway.url}${route}`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });

  it("runs only on the configured machine (no embedded worker)", () => {
    expect(gateway.fleet.list().map((m) => m.name)).toEqual(["gpu-1"]);
  });

  it("progress from the engine shows on the task and in its events", async () => {
    const { task_id } = (await (await post()).json()) as { task_id: string };
    const job = await until(() => engine.running[0]);
    engine.progress(job, 40, "extracting audio features");
    await until(async () => (await gateway.store.getTask(task_id))?.progress === 40);
    engine.release(job);
    await until(async () => (await gateway.store.getTask(task_id))?.status === "completed");
    const events = await gateway.store.listEvents(task_id);
    expect(events.find((e) => e.type === "progress" && e.progress === 40)?.message).toBe(
      "extracting audio features",
    );
  });

  it("an input failure fails the task at once with the engine's message", async () => {
    const res = post("/tasks/sync");
    const job = await until(() => engine.running[0]);
    engine.fail(job, "input", "存在多人脸: more than one face in the video");
    const answer = await res;
    expect(answer.status).toBe(422);
    const body = (await answer.json()) as { error: string; message: string; task_id: string };
    expect(body.error).toBe("TASK_FAILED");
    expect(body.message).toContain("more than one face");
    const task = await gateway.store.getTask(body.task_id);
    expect(task).toMatchObject({ status: "failed", error_kind: "input", attempts: 1 });
    expect(task?.error_message).toContain("存在多人脸");
    expect(engine.started).toHaveLength(1);
  });

  it("a machine failure is retried, and the task fails once --max-attempts is spent", async () => {
    const { task_id } = (await (await post()).json()) as { task_id: string };
    const first = await until(() => engine.running[0]);
    engine.fail(first, "machine", "CUDA out of memory");
    const second = await until(() => engine.running.find((id) => id !== first));
    engine.fail(second, "machine", "CUDA out of memory again");
    const task = await until(async () => {
      const t = await gateway.store.getTask(task_id);
      return t?.status === "failed" && t;
    });
    expect(task.attempts).toBe(2);
    expect(task.error_kind).toBe("machine");
    expect(task.error_message).toContain("gave up after 2 attempts");
    expect(task.error_message).toContain("CUDA out of memory again");
    const types = (await gateway.store.listEvents(task_id)).map((e) => e.type);
    expect(types).toEqual(["created", "queued", "dispatched", "requeued", "dispatched", "failed"]);
  });
});

describe("with no machine reachable", () => {
  let dir: string;
  let gateway: Gateway;

  beforeEach(async () => {
    dir = await tempDir();
    const machines = join(dir, "machines.json");
    // Port 9 (discard) on loopback: nothing listens, so every probe is refused.
    await writeFile(machines, JSON.stringify({ machines: [{ name: "gone", host: "127.0.0.1", port: 9 }] }));
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    gateway = await startTestGateway({ config: machines, syncTimeout: "300" }, join(dir, "gateway"));
  });

  afterEach(async () => {
    await gateway.close();
    await removeDir(dir);
  });

  it("tasks wait pending, the result answers 409, and /tasks/sync gives up with 504 and the id", async () => {
    await until(() => gateway.fleet.get("gone")?.state === "down");
    const res = await fetch(`${gateway.url}/tasks/sync`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    expect(res.status).toBe(504);
    const body = (await res.json()) as { error: string; task_id: string };
    expect(body.error).toBe("SYNC_TIMEOUT");
    expect(res.headers.get("x-task-id")).toBe(body.task_id);
    const task = (await (await fetch(`${gateway.url}/tasks/${body.task_id}`)).json()) as { status: string };
    expect(task.status).toBe("pending");
    const result = await fetch(`${gateway.url}/tasks/${body.task_id}/result`);
    expect(result.status).toBe(409);
    expect(((await result.json()) as { error: string }).error).toBe("TASK_NOT_COMPLETED");
  });

  it("says in the task's events that no machine is up, and /readyz names the failing check (issue 10)", async () => {
    await until(() => gateway.fleet.get("gone")?.state === "down");
    const created = (await (
      await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
      })
    ).json()) as { task_id: string };
    const { events } = (await (await fetch(`${gateway.url}/tasks/${created.task_id}/events`)).json()) as {
      events: Array<{ type: string; message: string | null }>;
    };
    expect(events.find((e) => e.type === "queued")?.message).toBe("waiting: 0 of 1 machines up");
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { failing: string[] }).failing).toContain("machines");
  });
});
