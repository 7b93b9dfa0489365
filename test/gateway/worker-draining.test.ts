import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { writeMachines } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

it("a job refused by a draining agent goes back to the queue uncounted, and the machine takes no more", async () => {
  const dir = await tempDir();
  cleanup.push(() => removeDir(dir));
  const worker = await startLocalWorker(join(dir, "worker"), new GateEngine(1));
  cleanup.push(() => worker.close());
  const machines = join(dir, "machines.json");
  await writeMachines(machines, [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }]);
  // Probed once at start, then not for a minute: the gateway learns of the drain from the refusal.
  const gateway = await startTestGateway({ config: machines, healthInterval: "60000" }, join(dir, "gw"));
  cleanup.push(() => gateway.close());
  await until(() => gateway.fleet.get("gpu-1")?.state === "up");
  const stopDrain = new AbortController();
  const drained = worker.drain({ graceMs: 60_000, hurry: stopDrain.signal });
  cleanup.push(async () => {
    stopDrain.abort();
    await drained;
  });

  await makeAudio(join(dir, "a.wav"), { seconds: 1 });
  await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
  const res = await fetch(`${gateway.url}/tasks`, {
    method: "POST",
    body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
  });
  const { task_id: id } = (await res.json()) as { task_id: string };
  const requeued = await until(async () => {
    const events = await gateway.store.listEvents(id);
    return events.find((e) => e.type === "requeued");
  });
  expect(requeued.message).toContain("is stopping");
  const task = await gateway.store.getTask(id);
  expect(task).toMatchObject({ status: "pending", attempts: 0 });
  const list = (await (await fetch(`${gateway.url}/machines`)).json()) as {
    machines: Array<{ state: string; agent_draining: boolean }>;
  };
  expect(list.machines[0]).toMatchObject({ state: "draining", agent_draining: true });
  const attempts = await gateway.store.listAttempts(id);
  expect(attempts.map((a) => a.status)).toEqual(["abandoned"]);
});
