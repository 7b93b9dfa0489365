import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { type CuttableProxy, startCuttableProxy } from "../helpers/cuttable-proxy.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
interface MachineJson {
  name: string;
  state: string;
  running: number;
  tasks_done: number;
  tasks_failed: number;
  speed: number | null;
  last_error: string | null;
}

/** Two machines, each a worker agent with a steerable engine, one behind a proxy that can be cut. */
describe("fleet health, failover and fencing", () => {
  let dir: string;
  let engines: Record<"a" | "b", GateEngine>;
  let workers: WorkerHandle[];
  let proxy: CuttableProxy;
  let gateway: Gateway;
  let machinesFile: string;

  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    engines = { a: new GateEngine(1), b: new GateEngine(1) };
    workers = [];
    for (const name of ["a", "b"] as const) {
      workers.push(await startLocalWorker(join(dir, `w-${name}`), engines[name]));
    }
    proxy = await startCuttableProxy(workers[0]?.port ?? 0);
    machinesFile = join(dir, "machines.json");
    await writeFile(
      machinesFile,
      JSON.stringify({
        machines: [
          { name: "a", host: "127.0.0.1", port: proxy.port, max_concurrent: 1 },
          { name: "b", host: "127.0.0.1", port: workers[1]?.port, max_concurrent: 1 },
        ],
      }),
    );
    gateway = await startTestGateway(
      { config: machinesFile, healthInterval: "50", machineGrace: "300", failureThreshold: "2" },
      join(dir, "gateway"),
    );
    await until(() => gateway.fleet.list().every((m) => m.state === "up"));
  });

  afterEach(async () => {
    await gateway.close();
    await proxy.close();
    for (const w of workers) await w.close();
    await removeDir(dir);
  });

  const post = async (extra: Record<string, string> = {}) => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({
        audio: { path: join(dir, "a.wav") },
        video: { path: join(dir, "v.mp4") },
        ...extra,
      }),
    });
    return ((await res.json()) as { task_id: string }).task_id;
  };
  const machines = async () =>
    ((await (await fetch(`${gateway.url}/machines`)).json()) as { machines: MachineJson[] }).machines;

  it("a machine cut off mid-task goes down, its task finishes elsewhere, and its stale job is cancelled when it returns", async () => {
    await gateway.app.inject({ method: "POST", url: "/machines/b/drain" });
    const id = await post();
    const onA = await until(() => engines.a.running[0]);
    await gateway.app.inject({ method: "POST", url: "/machines/b/resume" });

    proxy.cut();
    await until(async () => (await machines()).find((m) => m.name === "a")?.state === "down");
    const onB = await until(() => engines.b.running[0]);
    engines.b.release(onB);
    await until(async () => (await gateway.store.getTask(id))?.status === "completed");
    const task = await gateway.store.getTask(id);
    expect(task?.machine).toBe("b");
    expect(task?.attempts).toBe(2);

    // Machine a never noticed the partition: its engine still runs the abandoned job.
    expect(engines.a.isRunning(onA)).toBe(true);
    proxy.restore();
    await until(async () => (await machines()).find((m) => m.name === "a")?.state === "up");
    await until(() => !engines.a.isRunning(onA));
    // Fencing: nothing the stale attempt could report reaches the task.
    const after = await gateway.store.getTask(id);
    expect(after?.machine).toBe("b");
    expect(after?.current_attempt).toBe(task?.current_attempt);
    const events = await gateway.store.listEvents(id);
    expect(events.map((e) => e.type)).toEqual([
      "created",
      "queued",
      "dispatched",
      "requeued",
      "dispatched",
      "completed",
    ]);
  });

  it("a machine that answers again gets work again without a restart", async () => {
    proxy.cut();
    await until(async () => (await machines()).find((m) => m.name === "a")?.state === "down");
    await gateway.app.inject({ method: "POST", url: "/machines/b/drain" });
    const id = await post();
    expect(engines.a.running).toEqual([]);
    proxy.restore();
    const job = await until(() => engines.a.running[0]);
    engines.a.release(job);
    await until(async () => (await gateway.store.getTask(id))?.status === "completed");
    expect((await gateway.store.getTask(id))?.machine).toBe("a");
  });

  it("GET /machines reports state, load, counts and measured speed; drain and resume", async () => {
    const first = await post();
    const job = await until(() => engines.a.running[0] ?? engines.b.running[0]);
    const list = await machines();
    expect(list.map((m) => m.name).sort()).toEqual(["a", "b"]);
    expect(list.reduce((n, m) => n + m.running, 0)).toBe(1);
    (engines.a.isRunning(job) ? engines.a : engines.b).release(job);
    await until(async () => (await gateway.store.getTask(first))?.status === "completed");
    // The speed is learnt once the result is home, a moment after the task's row says completed.
    const done = await until(async () =>
      (await machines()).find((m) => m.tasks_done === 1 && m.speed !== null),
    );
    expect(done.speed).toBeGreaterThan(0);

    const drained = await gateway.app.inject({ method: "POST", url: "/machines/a/drain" });
    expect(drained.json()).toMatchObject({ name: "a", state: "draining", draining: true });
    const ids = [await post(), await post()];
    const onB = await until(() => engines.b.running[0]);
    expect(engines.a.running).toEqual([]);
    engines.b.release(onB);
    engines.b.release(await until(() => engines.b.running[0]));
    for (const id of ids) await until(async () => (await gateway.store.getTask(id))?.status === "completed");
    const resumed = await gateway.app.inject({ method: "POST", url: "/machines/a/resume" });
    expect(resumed.json()).toMatchObject({ state: "up", draining: false });
    const missing = await gateway.app.inject({ method: "POST", url: "/machines/zzz/drain" });
    expect(missing.statusCode).toBe(404);
  });

  it("a bad edit of machines.json is rejected and the last good configuration stays", async () => {
    const config = async () =>
      ((await (await fetch(`${gateway.url}/machines`)).json()) as { config: { error: string | null } })
        .config;
    await writeFile(machinesFile, JSON.stringify({ machines: [{ name: "a", host: "x", port: "nope" }] }));
    const refused = await until(async () => (await config()).error);
    expect(refused).toContain("machines[0].port");
    expect(gateway.fleet.get("a")?.spec.host).toBe("127.0.0.1");
    expect(
      gateway.fleet
        .list()
        .map((m) => m.name)
        .sort(),
    ).toEqual(["a", "b"]);
    await writeFile(machinesFile, '{"machines": [{"name": "a", "host": "127.0.0.1"}]');
    await until(async () => (await config()).error?.includes("not valid JSON"));
    expect(gateway.fleet.list()).toHaveLength(2);
    await writeFile(
      machinesFile,
      JSON.stringify({
        machines: [
          { name: "a", host: "127.0.0.1", port: proxy.port, max_concurrent: 2 },
          { name: "b", host: "127.0.0.1", port: workers[1]?.port, max_concurrent: 1 },
        ],
      }),
    );
    await until(() => gateway.fleet.get("a")?.spec.max_concurrent === 2);
    expect(gateway.fleet.get("a")?.spec.port).toBe(proxy.port);
    expect((await config()).error).toBeNull();
  });

  it("the per-task timeout fails a task that runs too long and cancels its job", async () => {
    await gateway.close();
    gateway = await startTestGateway(
      { config: machinesFile, healthInterval: "50", machineGrace: "300", taskTimeout: "1500" },
      join(dir, "gateway"),
    );
    const id = await post();
    const job = await until(() => engines.a.running[0] ?? engines.b.running[0]);
    const task = await until(async () => {
      const t = await gateway.store.getTask(id);
      return t?.status === "failed" && t;
    });
    expect(task.error_message).toContain("timed out");
    await until(() => !engines.a.isRunning(job) && !engines.b.isRunning(job));
  });
});
