import { once } from "node:events";
import { readdir, stat } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTask, getTask, type SimWorker, writeMachines } from "../helpers/fleet.js";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

interface EventJson {
  type: string;
  message: string | null;
}
interface MachineJson {
  name: string;
  state: string;
  agent_draining: boolean;
}

/** Real gateway and worker processes on loopback, stopped with SIGTERM as a service manager does. */
describe("graceful stops", () => {
  let dir: string;
  let audio: string;
  let longAudio: string;
  let video: string;
  let machinesFile: string;

  beforeEach(async () => {
    dir = await tempDir();
    audio = join(dir, "a.wav");
    longAudio = join(dir, "long.wav");
    video = join(dir, "v.mp4");
    machinesFile = join(dir, "machines.json");
    await makeAudio(audio, { seconds: 1 });
    await makeAudio(longAudio, { seconds: 20 });
    await makeVideo(video, { seconds: 1 });
  });

  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  const gatewayArgs = (extra: string[] = []) => [
    "--config",
    machinesFile,
    "--data-dir",
    join(dir, "gateway-data"),
    "--health-interval",
    "100",
    "--machine-grace",
    "1000",
    ...extra,
  ];
  const worker = (name: string, timeScale: number, grace = "60s") =>
    startSimWorkerWithGrace(dir, name, timeScale, grace);
  const exitOf = (p: Started) =>
    p.child.exitCode !== null ? Promise.resolve(p.child.exitCode) : once(p.child, "exit").then(([c]) => c);
  const machines = async (url: string) =>
    ((await (await fetch(`${url}/machines`)).json()) as { machines: MachineJson[] }).machines;
  const events = async (url: string, id: string) =>
    ((await (await fetch(`${url}/tasks/${id}/events`)).json()) as { events: EventJson[] }).events;
  const settled = (url: string, id: string, timeoutMs = 60_000) =>
    until(
      async () => {
        const t = await getTask(url, id);
        return (t.status === "completed" || t.status === "failed") && t;
      },
      timeoutMs,
      { what: `task ${id} finished` },
    );

  it("a worker sent SIGTERM drains: no new job, its running job completes, it exits 0 before the grace", async () => {
    // 20 s of audio × 0.25: a 5 s job, well inside the 60 s grace.
    const a = await worker("a", 0.25);
    await writeMachines(machinesFile, [{ name: "a", port: a.port, max_concurrent: 1 }]);
    const gateway = await startGatewayProcess(gatewayArgs());
    const first = await createTask(gateway.url, longAudio, video);
    await until(async () => (await getTask(gateway.url, first)).status === "processing");
    const b = await worker("b", 0.01);
    await writeMachines(machinesFile, [
      { name: "a", port: a.port, max_concurrent: 1 },
      { name: "b", port: b.port, max_concurrent: 1 },
    ]);
    await until(async () => (await machines(gateway.url)).find((m) => m.name === "b")?.state === "up");

    const exited = exitOf(a.process);
    a.process.child.kill("SIGTERM");
    const health = await until(async () => {
      const h = (await (await fetch(`${a.process.url}/v1/health`)).json()) as { state?: string };
      return h.state === "draining" && h;
    });
    expect(health).toMatchObject({ state: "draining" });
    await until(async () => {
      const m = (await machines(gateway.url)).find((x) => x.name === "a");
      return m?.state === "draining" && m.agent_draining;
    });
    // A new job is refused with the code the gateway reads as "not taking work".
    const refused = await fetch(`${a.process.url}/v1/jobs/direct-put`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        audio: { sha256: "0".repeat(64), bytes: 1 },
        video: { sha256: "0".repeat(64), bytes: 1 },
      }),
    });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: "WORKER_DRAINING" });

    const second = await createTask(gateway.url, audio, video);
    expect(await settled(gateway.url, second)).toMatchObject({ status: "completed", machine: "b" });
    expect(await settled(gateway.url, first)).toMatchObject({
      status: "completed",
      machine: "a",
      attempts: 1,
    });
    expect(await exited).toBe(0);
    const lines = a.process.lines.map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toContain("drained: every job finished and was collected");
  }, 90_000);

  it("a job longer than the grace is stopped at the grace and completes on another machine", async () => {
    // A 10 s job on a worker with 1 s of grace.
    const a = await worker("a", 0.5, "1s");
    await writeMachines(machinesFile, [{ name: "a", port: a.port, max_concurrent: 1 }]);
    const gateway = await startGatewayProcess(gatewayArgs());
    const id = await createTask(gateway.url, longAudio, video);
    await until(async () => (await getTask(gateway.url, id)).status === "processing");
    const b = await worker("b", 0.01);
    await writeMachines(machinesFile, [
      { name: "a", port: a.port, max_concurrent: 1 },
      { name: "b", port: b.port, max_concurrent: 1 },
    ]);
    await until(async () => (await machines(gateway.url)).find((m) => m.name === "b")?.state === "up");

    a.process.child.kill("SIGTERM");
    expect(await exitOf(a.process)).toBe(0);
    const task = await settled(gateway.url, id);
    expect(task).toMatchObject({ status: "completed", machine: "b", attempts: 2 });
    const requeued = (await events(gateway.url, id)).find((e) => e.type === "requeued");
    expect(requeued?.message).toContain("stopped while this job was running");
  }, 90_000);

  it("a gateway sent SIGTERM finishes an upload, answers a sync waiter, refuses new tasks, exits 0 and re-attaches", async () => {
    const a = await worker("a", 0.25);
    await writeMachines(machinesFile, [{ name: "a", port: a.port, max_concurrent: 2 }]);
    const gateway = await startGatewayProcess(gatewayArgs(["--shutdown-grace", "60s"]));
    await until(async () => (await machines(gateway.url)).every((m) => m.state === "up"));

    // A sync waiter on a 5 s job.
    const syncForm = new Response(await taskForm({ audio: { path: longAudio }, video: { path: video } }));
    const syncAnswer = fetch(`${gateway.url}/tasks/sync`, {
      method: "POST",
      headers: { "content-type": syncForm.headers.get("content-type") ?? "" },
      body: await syncForm.arrayBuffer(),
    });
    const syncId = await until(async () => {
      const list = (await (await fetch(`${gateway.url}/tasks`)).json()) as {
        tasks: Array<{ task_id: string; status: string }>;
      };
      return list.tasks.find((t) => t.status === "processing")?.task_id;
    });

    // An upload sent but for its last kilobyte, held until the gateway is stopping: its audio, whole,
    // waits in a temp file (the video, under a megabyte, is held in memory until it is whole).
    const form = new Response(await taskForm({ audio: { path: audio }, video: { path: video } }));
    const body = Buffer.from(await form.arrayBuffer());
    const upload = httpRequest(`${gateway.url}/tasks`, {
      method: "POST",
      headers: { "content-type": form.headers.get("content-type") ?? "", "content-length": body.length },
    });
    const uploadAnswer = once(upload, "response").then(([res]) => readAll(res as IncomingMessage));
    const held = body.length - 1024;
    upload.write(body.subarray(0, held));
    const tmp = join(dir, "gateway-data", "blobs", ".tmp");
    await until(async () => {
      for (const name of await readdir(tmp)) if ((await stat(join(tmp, name))).size > 0) return true;
      return false;
    });

    const exited = exitOf(gateway);
    gateway.child.kill("SIGTERM");
    const sync = await syncAnswer;
    expect(sync.status).toBe(503);
    expect(sync.headers.get("x-task-id")).toBe(syncId);
    expect(await sync.json()).toMatchObject({ error: "SHUTTING_DOWN", task_id: syncId });
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ failing: ["accepting"] });
    const refused = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(await refused.json()).toMatchObject({ error: "SHUTTING_DOWN" });

    upload.end(body.subarray(held));
    const uploaded = await uploadAnswer;
    expect(uploaded.status).toBe(200);
    const uploadedId = (JSON.parse(uploaded.text) as { task_id: string }).task_id;
    expect(await exited).toBe(0);

    const again = await startGatewayProcess(gatewayArgs());
    expect(await settled(again.url, syncId)).toMatchObject({ status: "completed", attempts: 1 });
    expect(await settled(again.url, uploadedId)).toMatchObject({ status: "completed" });
  }, 90_000);

  it("pending tasks say so once per outage when the last machine goes down", async () => {
    const a = await worker("a", 1);
    const b = await worker("b", 1);
    await writeMachines(machinesFile, [
      { name: "a", port: a.port, max_concurrent: 1 },
      { name: "b", port: b.port, max_concurrent: 1 },
    ]);
    const gateway = await startGatewayProcess(gatewayArgs(["--machine-grace", "60000"]));
    await until(async () => (await machines(gateway.url)).every((m) => m.state === "up"));
    const running = [
      await createTask(gateway.url, longAudio, video),
      await createTask(gateway.url, longAudio, video),
    ];
    await until(async () => {
      const tasks = await Promise.all(running.map((id) => getTask(gateway.url, id)));
      return tasks.every((t) => t.status === "processing");
    });
    const pending = [
      await createTask(gateway.url, audio, video),
      await createTask(gateway.url, audio, video),
    ];
    for (const id of pending)
      expect((await events(gateway.url, id)).map((e) => e.type)).not.toContain("waiting");

    await a.process.kill();
    await b.process.kill();
    const ready = await until(async () => {
      const res = await fetch(`${gateway.url}/readyz`);
      return res.status === 503 && ((await res.json()) as { failing: string[] });
    });
    expect(ready.failing).toEqual(["machines"]);
    const notes = async (id: string) => (await events(gateway.url, id)).filter((e) => e.type === "waiting");
    for (const id of pending) {
      const found = await until(async () => (await notes(id)).length > 0 && notes(id));
      expect(found.map((e) => e.message)).toEqual(["waiting: 0 of 2 machines up"]);
    }
    // More changes of the fleet within the same outage (each probe that fails, an operator's drain,
    // a reloaded machines file) write no more notes: once per outage.
    expect((await fetch(`${gateway.url}/machines/a/drain`, { method: "POST" })).status).toBe(200);
    await writeMachines(machinesFile, [
      { name: "a", port: a.port, max_concurrent: 1 },
      { name: "b", port: b.port, max_concurrent: 2 },
    ]);
    await until(async () => (await machines(gateway.url)).find((m) => m.name === "a")?.state === "draining");
    await until(async () => gateway.lines.some((l) => l.includes('"machine changed"')));
    for (const id of pending) expect(await notes(id)).toHaveLength(1);
    for (const id of running) expect(await notes(id)).toHaveLength(0);
  }, 90_000);
});

async function startSimWorkerWithGrace(
  dir: string,
  name: string,
  timeScale: number,
  grace: string,
): Promise<SimWorker> {
  const dataDir = join(dir, `worker-${name}`);
  const process = await startWorkerProcess([
    "--engine",
    "simulate",
    "--data-dir",
    dataDir,
    "--time-scale",
    String(timeScale),
    "--shutdown-grace",
    grace,
  ]);
  return { name, dataDir, capacity: 1, process, port: Number(new URL(process.url).port) };
}

async function readAll(res: IncomingMessage): Promise<{ status: number; text: string }> {
  let text = "";
  for await (const chunk of res) text += String(chunk);
  return { status: res.statusCode ?? 0, text };
}
