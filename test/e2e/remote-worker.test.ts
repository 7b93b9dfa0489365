import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

interface TaskJson {
  task_id: string;
  status: string;
  machine: string | null;
  result_url: string;
}

/** `multi-heygem worker` and `multi-heygem gateway` as separate processes, wired by machines.json. */
describe("gateway and a separate worker process", () => {
  let dir: string;
  let worker: Started;
  let gateway: Started;
  const gatewayArgs = () => ["--data-dir", join(dir, "gateway-data"), "--health-interval", "100"];

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 2 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1, width: 256, height: 144, fps: 30 });
    worker = await startWorkerProcess(["--data-dir", join(dir, "worker-data"), "--engine", "ffmpeg"]);
    const port = Number(new URL(worker.url).port);
    await mkdir(join(dir, "config"));
    // The default location, as a user would set it up: no --config flag needed.
    await writeFile(
      join(dir, "config", "machines.json"),
      JSON.stringify({
        machines: [{ name: "gpu-a", host: "127.0.0.1", port, max_concurrent: 1, enabled: true }],
      }),
    );
    gateway = await startGatewayProcess(gatewayArgs(), { cwd: dir });
  });

  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  const get = async (id: string) => (await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as TaskJson;

  it("uses config/machines.json and runs no embedded worker", () => {
    expect(gateway.lines.some((l) => l.includes("embedded ffmpeg worker"))).toBe(false);
  });

  it("a task runs on the worker machine and its MP4 comes back", async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    const { task_id } = (await res.json()) as TaskJson;
    const done = await until(async () => {
      const t = await get(task_id);
      return t.status === "completed" && t;
    }, 30_000);
    expect(done.machine).toBe("gpu-a");
    const out = join(dir, "out.mp4");
    await writeFile(out, Buffer.from(await (await fetch(done.result_url)).arrayBuffer()));
    const media = await probe(out);
    expect(media.video).toMatchObject({ width: 256, height: 144 });
    expect(media.video?.fps).toBeCloseTo(30, 0);
    expect(Math.abs(media.durationSec - 2)).toBeLessThan(0.2);
    // Every log line about the task carries its id; at info, the events that matter are there
    // (routine steps such as the worker accepting the job are debug lines since issue 10).
    const taskLines = gateway.lines.filter((l) => l.includes(task_id));
    const messages = taskLines.map((line) => JSON.parse(line) as { task_id?: string; msg?: string });
    expect(messages.map((m) => m.msg)).toEqual(expect.arrayContaining(["task created", "task completed"]));
    for (const m of messages) expect(m.task_id).toBe(task_id);
  });

  it("kill -9 and restart of the gateway keeps tasks, results and events", async () => {
    const { tasks } = (await (await fetch(`${gateway.url}/tasks`)).json()) as { tasks: TaskJson[] };
    const before = tasks[0];
    if (!before) throw new Error("no task from the previous test");
    const result = Buffer.from(await (await fetch(before.result_url)).arrayBuffer());
    const events = await (await fetch(`${gateway.url}/tasks/${before.task_id}/events`)).json();

    await gateway.kill();
    gateway = await startGatewayProcess(gatewayArgs(), { cwd: dir });

    const after = await get(before.task_id);
    expect(after.status).toBe("completed");
    const again = Buffer.from(
      await (await fetch(`${gateway.url}/tasks/${before.task_id}/result`)).arrayBuffer(),
    );
    expect(again.equals(result)).toBe(true);
    expect(await (await fetch(`${gateway.url}/tasks/${before.task_id}/events`)).json()).toEqual(events);
    expect(await readFile(join(dir, "gateway-data", "multi-heygem.db"))).toBeTruthy();
  });

  it("SIGTERM stops the gateway cleanly with exit code 0", async () => {
    expect(await gateway.stop()).toBe(0);
  });
});
