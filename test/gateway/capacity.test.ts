import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

/** Issue 10: machines.json says 3 slots, the agent runs 1 job at a time. */
describe("a machine whose agent has fewer slots than machines.json lists", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({
        machines: [{ name: "gpu", host: "127.0.0.1", port: worker.port, max_concurrent: 3 }],
      }),
    );
    gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterEach(async () => {
    await gateway.close();
    await worker.close();
    await removeDir(dir);
  });

  it("runs at the agent's one slot and says why in GET /machines", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const form = await taskForm({
        audio: { path: join(dir, "a.wav") },
        video: { path: join(dir, "v.mp4") },
      });
      const res = await fetch(`${gateway.url}/tasks`, { method: "POST", body: form });
      ids.push(((await res.json()) as { task_id: string }).task_id);
    }
    const machines = (await (await fetch(`${gateway.url}/machines`)).json()) as {
      machines: Array<{ max_concurrent: number; capacity: number; warnings: string[]; running: number }>;
    };
    expect(machines.machines[0]).toMatchObject({
      max_concurrent: 3,
      capacity: 1,
      warnings: ["the agent runs 1 job at once but machines.json says max_concurrent 3: running at 1"],
    });

    for (let done = 0; done < 3; done++) {
      const [running] = await until(() => (engine.running.length > 0 ? engine.running : undefined));
      // One job at a time reaches the agent: the gateway never queues a second one there.
      expect(gateway.fleet.get("gpu")?.running.size).toBe(1);
      if (running) engine.release(running);
      await until(() => !engine.isRunning(running ?? ""));
    }
    await until(async () => {
      const statuses = await Promise.all(
        ids.map(
          async (id) =>
            ((await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as { status: string }).status,
        ),
      );
      return statuses.every((s) => s === "completed");
    });
    expect(engine.maxInFlight).toBe(1);
  });
});
