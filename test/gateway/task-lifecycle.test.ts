import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { Client } from "../../src/client/index.js";
import { createEngine } from "../../src/engines/registry.js";
import { TaskLifecycle } from "../../src/gateway/task-lifecycle.js";
import { createLogger } from "../../src/logger.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { peakConcurrency } from "../../src/worker/job-journal.js";
import { bearer, type TestKey, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { journal } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { sampleValue, scrape } from "../helpers/prometheus.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { newTask, openTestStore } from "../helpers/store.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

interface TaskJson {
  task_id: string;
  status: string;
  attempts: number;
  progress: number;
  error_message: string | null;
  machine: string | null;
}

/**
 * Issue 10, "Task lifecycle": cancel, retry and the bulk cancel through a real gateway with API
 * keys, in front of a real worker agent whose engine the test steers (GateEngine, one slot).
 */
describe("cancel and retry (gate engine, API keys)", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let gateway: Gateway;
  let receiver: Receiver;
  let audio: string;
  let video: string;
  const shop = testKey("shop", "submit");
  const other = testKey("other", "submit");
  const boss = testKey("boss", "admin");

  const start = () =>
    startTestGateway(
      { config: join(dir, "machines.json"), apiKeys: join(dir, "keys.json") },
      join(dir, "gateway"),
    );

  beforeAll(async () => {
    dir = await tempDir();
    audio = join(dir, "a.wav");
    video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    await writeKeysFile(join(dir, "keys.json"), [shop, other, boss]);
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({
        machines: [{ name: "gpu", host: "127.0.0.1", port: worker.port, max_concurrent: 1 }],
      }),
    );
    receiver = await startReceiver();
    gateway = await start();
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterAll(async () => {
    await gateway.close();
    await worker.close();
    await receiver.close();
    await removeDir(dir);
  });

  const call = (path: string, key: TestKey, init: RequestInit = {}) =>
    fetch(`${gateway.url}${path}`, { ...init, headers: { ...bearer(key), ...init.headers } });
  const post = (path: string, key: TestKey) => call(path, key, { method: "POST" });
  const create = async (key: TestKey = shop, fields: Record<string, string> = {}, file = audio) => {
    const res = await call("/tasks", key, {
      method: "POST",
      body: await taskForm({
        audio: { path: file },
        video: { path: video },
        callback_url: receiver.url,
        ...fields,
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return ((await res.json()) as TaskJson).task_id;
  };
  const task = async (id: string) => (await (await call(`/tasks/${id}`, boss)).json()) as TaskJson;
  const statusOf = async (id: string) => (await task(id)).status;
  const eventsOf = async (id: string) =>
    ((await (await call(`/tasks/${id}/events`, boss)).json()) as { events: { type: string }[] }).events.map(
      (e) => e.type,
    );
  const callbacksOf = (id: string) =>
    receiver.received.filter((r) => r.body.task_id === id).map((r) => `${r.body.event}:${r.body.status}`);
  /** The job of the task's current attempt, once it waits at the engine's gate. */
  const jobOf = async (id: string) => {
    await until(async () => (await statusOf(id)) === "processing");
    const attempts = await gateway.store.listAttempts(id);
    const current = attempts.at(-1)?.id ?? "";
    await until(() => engine.isRunning(current), 10_000, { what: `job of ${id} at the gate` });
    return current;
  };
  /** Ends whatever runs now, and waits until the engine is idle again. */
  const drain = async () => {
    for (const id of engine.running) engine.release(id);
    await until(async () => gateway.fleet.get("gpu")?.running.size === 0);
  };

  it("a pending task cancelled never runs; its worker never hears of it; event and callback say so", async () => {
    const running = await create();
    const runningJob = await jobOf(running);
    const queued = await create();
    const res = await post(`/tasks/${queued}/cancel`, shop);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ task_id: queued, status: "cancelled", attempts: 0 });

    engine.release(runningJob);
    await until(async () => (await statusOf(running)) === "completed");
    expect(await statusOf(queued)).toBe("cancelled");
    expect(await gateway.store.listAttempts(queued)).toEqual([]);
    const jobs = new Set((await journal({ dataDir: join(dir, "worker") })).map((l) => l.job_id));
    expect(jobs.has(runningJob)).toBe(true);
    expect(jobs.size).toBe(1);
    expect(await eventsOf(queued)).toEqual(["created", "queued", "cancelled"]);
    await until(() => callbacksOf(queued).includes("cancelled:cancelled"));
    expect(callbacksOf(queued)).toEqual(["queued:pending", "cancelled:cancelled"]);

    // Already final: cancelling again is a conflict, and so is cancelling a completed task.
    const again = await post(`/tasks/${queued}/cancel`, shop);
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: "TASK_FINISHED" });
    expect((await post(`/tasks/${running}/cancel`, shop)).status).toBe(409);
    // A completed task cannot be retried.
    const retry = await post(`/tasks/${running}/retry`, shop);
    expect(retry.status).toBe(409);
    expect(await retry.json()).toMatchObject({ error: "TASK_NOT_RETRYABLE" });
  });

  it("a running task cancelled: its job is cancelled on the worker, the slot frees, the next task runs", async () => {
    const first = await create();
    const firstJob = await jobOf(first);
    const second = await create();
    const res = await post(`/tasks/${first}/cancel`, shop);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "cancelled" });

    const secondJob = await jobOf(second);
    expect(engine.isRunning(firstJob)).toBe(false);
    // The journal is appended through a stream: its "started" line may land just after health says so.
    const lines = await until(async () => {
      const all = await journal({ dataDir: join(dir, "worker") });
      return all.some((l) => l.job_id === secondJob && l.event === "started") && all;
    });
    expect(lines.find((l) => l.job_id === firstJob && l.event === "finished")?.status).toBe("cancelled");
    expect((await gateway.store.listAttempts(first)).map((a) => a.status)).toEqual(["cancelled"]);
    expect(engine.maxInFlight).toBe(1);
    engine.release(secondJob);
    await until(async () => (await statusOf(second)) === "completed");
    expect(await statusOf(first)).toBe("cancelled");
    await until(() => callbacksOf(first).includes("cancelled:cancelled"));
    expect(await eventsOf(first)).toEqual(["created", "queued", "dispatched", "cancelled"]);

    // The attempt's outcome is counted as cancelled, and the task among the cancelled ones.
    const metrics = await scrape(gateway.url, bearer(boss));
    expect(
      sampleValue(metrics, "multi_heygem_attempts_total", { machine: "gpu", outcome: "cancelled" }),
    ).toBe(1);
    expect(sampleValue(metrics, "multi_heygem_tasks", { status: "cancelled" })).toBeGreaterThanOrEqual(2);
  });

  it("a sync request waiting on a task answers 409 TASK_CANCELLED at once when it is cancelled", async () => {
    const blocker = await create();
    const blockerJob = await jobOf(blocker);
    const sync = call("/tasks/sync", shop, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    const waiting = await until(async () => {
      const list = (await (await call("/tasks?status=pending", boss)).json()) as { tasks: TaskJson[] };
      return list.tasks[0]?.task_id;
    });
    expect((await post(`/tasks/${waiting}/cancel`, shop)).status).toBe(200);
    const res = await sync;
    expect(res.status).toBe(409);
    expect(res.headers.get("x-task-id")).toBe(waiting);
    expect(await res.json()).toMatchObject({ error: "TASK_CANCELLED", task_id: waiting });
    engine.release(blockerJob);
    await drain();
  });

  it("a failed task retried goes back to pending under its id with fresh attempts, and completes", async () => {
    const id = await create();
    const job = await jobOf(id);
    engine.fail(job, "input", "no face found");
    await until(async () => (await statusOf(id)) === "failed");
    const res = await post(`/tasks/${id}/retry`, shop);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      task_id: id,
      status: "pending",
      attempts: 0,
      progress: 0,
      error_message: null,
      machine: null,
    });
    const again = await jobOf(id);
    expect(again).not.toBe(job);
    engine.release(again);
    await until(async () => (await statusOf(id)) === "completed");
    expect(await task(id)).toMatchObject({ attempts: 1, error_message: null });
    expect(await eventsOf(id)).toEqual([
      "created",
      "queued",
      "dispatched",
      "failed",
      "retried",
      "dispatched",
      "completed",
    ]);
    await until(() => callbacksOf(id).includes("completed:completed"));
    expect(callbacksOf(id)).toContain("retried:pending");
    // A retry of a task that is not failed or cancelled is refused.
    expect((await post(`/tasks/${id}/retry`, shop)).status).toBe(409);
  });

  it("a cancelled task whose inputs were deleted cannot be retried: 410 INPUTS_DELETED", async () => {
    const blocker = await create();
    const blockerJob = await jobOf(blocker);
    const ownAudio = join(dir, "own.wav");
    await makeAudio(ownAudio, { seconds: 2 });
    const id = await create(shop, {}, ownAudio);
    expect((await post(`/tasks/${id}/cancel`, shop)).status).toBe(200);
    const row = await gateway.store.getTask(id);
    await new BlobStore(join(gateway.dataDir, "blobs")).remove(row?.audio_sha256 ?? "");
    const res = await post(`/tasks/${id}/retry`, shop);
    expect(res.status).toBe(410);
    expect(await res.json()).toMatchObject({ error: "INPUTS_DELETED" });
    expect(await statusOf(id)).toBe("cancelled");
    engine.release(blockerJob);
    await drain();
  });

  it("a submit key cannot cancel or retry another key's task (404), and the bulk cancel is admin only", async () => {
    const blocker = await create();
    const blockerJob = await jobOf(blocker);
    const mine = await create(shop);
    for (const path of [`/tasks/${mine}/cancel`, `/tasks/${mine}/retry`]) {
      const res = await post(path, other);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: "NOT_FOUND" });
    }
    expect((await post("/tasks/unknown-id/cancel", boss)).status).toBe(404);
    expect(await statusOf(mine)).toBe("pending");
    expect((await post("/tasks/cancel?status=pending", shop)).status).toBe(403);
    expect((await fetch(`${gateway.url}/tasks/cancel?status=pending`, { method: "POST" })).status).toBe(401);
    // An admin may cancel any task.
    expect((await post(`/tasks/${mine}/cancel`, boss)).status).toBe(200);
    engine.release(blockerJob);
    await drain();
  });

  it("POST /tasks/cancel?status=pending empties the queue and says how many; running tasks go on", async () => {
    const running = await create();
    const runningJob = await jobOf(running);
    const queued = [await create(shop), await create(other), await create(shop)];
    const bad = await post("/tasks/cancel?status=failed", boss);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: "INVALID_REQUEST", field: "status" });
    expect((await post("/tasks/cancel", boss)).status).toBe(400);

    const res = await post("/tasks/cancel?status=pending", boss);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ cancelled: 3 });
    for (const id of queued) expect(await statusOf(id)).toBe("cancelled");
    expect(await statusOf(running)).toBe("processing");
    const list = (await (await call("/tasks?status=cancelled", boss)).json()) as { tasks: TaskJson[] };
    expect(list.tasks.map((t) => t.task_id)).toEqual(expect.arrayContaining(queued));
    for (const id of queued) await until(() => callbacksOf(id).includes("cancelled:cancelled"));
    expect(await (await post("/tasks/cancel?status=pending", boss)).json()).toEqual({ cancelled: 0 });
    engine.release(runningJob);
    await drain();
  });

  it("a gateway restart after a cancel does not bring the task back", async () => {
    const id = await create();
    const job = await jobOf(id);
    expect((await post(`/tasks/${id}/cancel`, shop)).status).toBe(200);
    await until(() => !engine.isRunning(job));
    const startedBefore = engine.started.length;
    await gateway.close();
    gateway = await start();
    await until(() => gateway.fleet.get("gpu")?.state === "up");
    await gateway.fleet.probeAll();
    expect(await statusOf(id)).toBe("cancelled");
    expect(gateway.fleet.get("gpu")?.running.size).toBe(0);
    expect(engine.started.length).toBe(startedBefore);
    expect((await gateway.store.liveAttempts()).map((a) => a.task_id)).not.toContain(id);
  });
});

describe("cancel of a running task on a simulate worker", () => {
  let dir: string;
  let worker: WorkerHandle;
  let gateway: Gateway;

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    // A second of audio takes ten minutes here: a job only ends by being cancelled.
    const engine = createEngine("simulate", { config: { simulate: { speedFactor: 1, timeScale: 600 } } });
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({
        machines: [{ name: "sim", host: "127.0.0.1", port: worker.port, max_concurrent: 1 }],
      }),
    );
    gateway = await startTestGateway({ config: join(dir, "machines.json") }, join(dir, "gateway"));
    await until(() => gateway.fleet.get("sim")?.state === "up");
  });

  afterAll(async () => {
    await gateway.close();
    await worker.close();
    await removeDir(dir);
  });

  const create = async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    return ((await res.json()) as TaskJson).task_id;
  };
  const workerJobs = async () =>
    (await (await fetch(`${worker.url}/v1/health`)).json()) as { running: string[]; queued: string[] };

  it("stops the job on the worker, frees the slot, and the next task starts there", async () => {
    const first = await create();
    const second = await create();
    const [firstJob] = await until(async () => {
      const { running } = await workerJobs();
      return running.length === 1 && running;
    });
    expect((await gateway.store.getTask(second))?.status).toBe("pending");
    const res = await fetch(`${gateway.url}/tasks/${first}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    const [secondJob] = await until(async () => {
      const { running } = await workerJobs();
      return running.length === 1 && running[0] !== firstJob && running;
    });
    expect((await gateway.store.getTask(second))?.current_attempt).toBe(secondJob);
    // The journal is appended through a stream: its "started" line may land just after health says so.
    const lines = await until(async () => {
      const all = await journal({ dataDir: join(dir, "worker") });
      return all.some((l) => l.job_id === secondJob && l.event === "started") && all;
    });
    expect(lines.find((l) => l.job_id === firstJob && l.event === "finished")?.status).toBe("cancelled");
    // Never two jobs on the one-slot worker. Health shows a job that takes a free slot while its
    // first record is still written: a cancel that lands then stops it before its engine begins,
    // so the first job has a `started` line only if the disk was quicker than the cancel.
    expect(peakConcurrency(lines)).toBe(1);
    const started = lines.filter((l) => l.event === "started").map((l) => l.job_id);
    expect(started.filter((id) => id !== firstJob)).toEqual([secondJob]);
    // The TypeScript example client cancels too, and its waitFor ends on the cancelled status.
    const client = new Client({ url: gateway.url });
    expect((await client.cancel(second)).status).toBe("cancelled");
    expect((await client.waitFor(second)).status).toBe("cancelled");
    await until(async () => (await workerJobs()).running.length === 0);
  });
});

describe("TaskLifecycle.cancelPending", () => {
  it("cancels the queue in batches of the given size, each task with its event", async () => {
    const dir = await tempDir();
    const s = await openTestStore(dir);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        const input = newTask();
        ids.push(input.id);
        await s.tasks.createTask(input);
      }
      const batches = vi.spyOn(s.tasks, "cancelPendingBatch");
      const lifecycle = new TaskLifecycle({
        store: s.tasks,
        blobs: new BlobStore(join(dir, "blobs")),
        queue: { admit: () => () => undefined },
        logger: createLogger({ level: "silent", format: "json" }),
        onQueued: () => undefined,
        batchSize: 3,
      });
      expect(await lifecycle.cancelPending()).toBe(7);
      expect(batches).toHaveBeenCalledTimes(3);
      for (const id of ids) {
        expect((await s.tasks.getTask(id))?.status).toBe("cancelled");
        expect((await s.tasks.listEvents(id)).map((e) => e.type)).toEqual(["created", "queued", "cancelled"]);
      }
      expect(s.tasks.pendingCount).toBe(0);
    } finally {
      await s.close();
      await removeDir(dir);
    }
  });
});
