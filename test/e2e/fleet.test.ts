import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { peakConcurrency } from "../../src/worker/job-journal.js";
import {
  createTask,
  getTask,
  journal,
  type SimWorker,
  startedJobs,
  startSimWorker,
  writeMachines,
} from "../helpers/fleet.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

/**
 * Real gateway and worker processes on loopback, killed with SIGKILL for real; on each store
 * (issue 13: the crash tests pass on PostgreSQL as on SQLite).
 */
describe.each([
  { store: "SQLite", skip: false },
  { store: "PostgreSQL", skip: !postgresAvailable },
])("the fleet under failure ($store)", ({ store, skip }) => {
  if (skip) return;
  let dir: string;
  let database: TestDatabase | undefined;
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
    await makeAudio(audio, { seconds: 2 });
    await makeAudio(longAudio, { seconds: 20 });
    await makeVideo(video, { seconds: 1 });
    database = store === "PostgreSQL" ? await createTestDatabase() : undefined;
  });

  afterEach(async () => {
    await killAll();
    await database?.drop();
    await removeDir(dir);
  });

  const gatewayArgs = () => [
    "--config",
    machinesFile,
    "--data-dir",
    join(dir, "gateway-data"),
    "--health-interval",
    "100",
    "--machine-grace",
    "1000",
    ...(database ? ["--store", database.url] : []),
  ];
  const startGateway = () => startGatewayProcess(gatewayArgs());
  const allDone = async (url: string, ids: string[], timeoutMs = 60_000) =>
    until(
      async () => {
        const tasks = await Promise.all(ids.map((id) => getTask(url, id)));
        const failed = tasks.find((t) => t.status === "failed");
        if (failed) throw new Error(`task ${failed.task_id} failed: ${failed.error_message}`);
        return tasks.every((t) => t.status === "completed") && tasks;
      },
      timeoutMs,
      { intervalMs: 100 },
    );

  it("3 workers, 30 tasks: all complete and no worker ever runs more than its max_concurrent", async () => {
    const workers: SimWorker[] = [
      await startSimWorker(dir, "w1", { capacity: 2, timeScale: 0.15 }),
      await startSimWorker(dir, "w2", { capacity: 1, timeScale: 0.15 }),
      await startSimWorker(dir, "w3", { capacity: 1, timeScale: 0.15, speedFactor: 2 }),
    ];
    await writeMachines(
      machinesFile,
      workers.map((w) => ({ name: w.name, port: w.port, max_concurrent: w.capacity })),
    );
    const gateway = await startGateway();
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await createTask(gateway.url, audio, video));
    const tasks = await allDone(gateway.url, ids);
    expect(new Set(tasks.map((t) => t.machine)).size).toBe(3);
    let runs = 0;
    for (const w of workers) {
      const lines = await journal(w);
      // Placed (accepted) as well as run (started): the gateway must not even queue work beyond it.
      expect(peakConcurrency(lines, "accepted"), w.name).toBeLessThanOrEqual(w.capacity);
      expect(peakConcurrency(lines, "started"), w.name).toBeLessThanOrEqual(w.capacity);
      runs += lines.filter((l) => l.event === "started").length;
    }
    expect(runs).toBe(30);
  });

  it("kill -9 of a worker in the middle of a task: the task completes on another machine", async () => {
    const workers = [
      await startSimWorker(dir, "w1", { capacity: 1, timeScale: 0.25 }),
      await startSimWorker(dir, "w2", { capacity: 1, timeScale: 0.25 }),
    ];
    await writeMachines(
      machinesFile,
      workers.map((w) => ({ name: w.name, port: w.port, max_concurrent: 1 })),
    );
    const gateway = await startGateway();
    const id = await createTask(gateway.url, longAudio, video);
    const first = await until(async () => {
      const t = await getTask(gateway.url, id);
      return t.status === "processing" && t.machine;
    });
    const victim = workers.find((w) => w.name === first);
    if (!victim) throw new Error(`unknown machine ${first}`);
    await until(async () => (await startedJobs(victim)).length === 1);
    await victim.process.kill();
    const [done] = await allDone(gateway.url, [id]);
    expect(done?.machine).not.toBe(first);
    expect(done?.attempts).toBe(2);
    const events = (await (await fetch(`${gateway.url}/tasks/${id}/events`)).json()) as {
      events: Array<{ type: string }>;
    };
    expect(events.events.map((e) => e.type)).toContain("requeued");
  });

  it("kill -9 of the gateway with 10 tasks in flight: after a restart all 10 complete, each run exactly once", async () => {
    const workers = [
      await startSimWorker(dir, "w1", { capacity: 2, timeScale: 0.3 }),
      await startSimWorker(dir, "w2", { capacity: 2, timeScale: 0.3 }),
    ];
    await writeMachines(
      machinesFile,
      workers.map((w) => ({ name: w.name, port: w.port, max_concurrent: 2 })),
    );
    let gateway: Started = await startGateway();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await createTask(gateway.url, audio, video));
    // Kill while every slot is busy and the rest still wait.
    await until(
      async () =>
        (await startedJobs(workers[0] as SimWorker)).length +
          (await startedJobs(workers[1] as SimWorker)).length >=
        4,
    );
    await gateway.kill();
    gateway = await startGateway();
    await allDone(gateway.url, ids);
    const runs = [
      ...(await startedJobs(workers[0] as SimWorker)),
      ...(await startedJobs(workers[1] as SimWorker)),
    ];
    expect(runs).toHaveLength(10);
    expect(new Set(runs).size).toBe(10);
    for (const w of workers) expect(peakConcurrency(await journal(w), "accepted")).toBeLessThanOrEqual(2);
  });

  it("hot reload: an added machine receives work; a disabled one gets none after its running task", async () => {
    const w1 = await startSimWorker(dir, "w1", { capacity: 1, timeScale: 0.2 });
    const w2 = await startSimWorker(dir, "w2", { capacity: 1, timeScale: 0.2 });
    await writeMachines(machinesFile, [{ name: "w1", port: w1.port, max_concurrent: 1 }]);
    const gateway = await startGateway();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await createTask(gateway.url, audio, video));
    await until(async () => (await startedJobs(w1)).length >= 1);

    await writeMachines(machinesFile, [
      { name: "w1", port: w1.port, max_concurrent: 1 },
      { name: "w2", port: w2.port, max_concurrent: 1 },
    ]);
    await until(async () => (await startedJobs(w2)).length >= 1, 20_000);

    await writeMachines(machinesFile, [
      { name: "w1", port: w1.port, max_concurrent: 1, enabled: false },
      { name: "w2", port: w2.port, max_concurrent: 1 },
    ]);
    await until(async () => {
      const { machines } = (await (await fetch(`${gateway.url}/machines`)).json()) as {
        machines: Array<{ name: string; state: string; running: number }>;
      };
      const m = machines.find((x) => x.name === "w1");
      return m?.state === "disabled" && m.running === 0;
    });
    const w1Runs = (await startedJobs(w1)).length;
    for (let i = 0; i < 3; i++) ids.push(await createTask(gateway.url, audio, video));
    await allDone(gateway.url, ids);
    expect((await startedJobs(w1)).length).toBe(w1Runs);
  });
});
