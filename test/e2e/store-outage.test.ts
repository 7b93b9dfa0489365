import { rename } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTask, getTask, startedJobs, startSimWorker, writeMachines } from "../helpers/fleet.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, startGatewayProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

/**
 * The store out of reach while a task runs (its database connection lost, its data dir gone):
 * recording the attempt's end fails STORE_UNAVAILABLE, which is neither the machine's fault nor
 * the task's. The gateway must neither crash on it (it did: an unhandled rejection, found by
 * test/e2e/chaos.test.ts with a cut database connection) nor throw the finished render away: the
 * attempt waits for the store, then completes the task, once.
 */
describe("the store out of reach while a task runs", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await tempDir("mh-store-outage-");
  });
  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("the attempt waits for the store, then completes the task with its first render", async () => {
    const audio = join(dir, "a.wav");
    const video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 3 });
    await makeVideo(video, { seconds: 1 });
    const worker = await startSimWorker(dir, "gpu", { capacity: 1, timeScale: 1 });
    const machines = join(dir, "machines.json");
    await writeMachines(machines, [{ name: "gpu", port: worker.port, max_concurrent: 1 }]);
    const data = join(dir, "data");
    const gateway = await startGatewayProcess([
      "--data-dir",
      data,
      // Elsewhere, so that the result still comes home while the data dir is away.
      "--blobs-dir",
      join(dir, "blobs"),
      "--config",
      machines,
      "--health-interval",
      "100",
    ]);
    const id = await createTask(gateway.url, audio, video);
    await until(async () => (await startedJobs(worker)).length === 1, 20_000);

    // The data dir goes away under the running gateway (as a database connection can): every
    // write to the store now fails STORE_UNAVAILABLE, the completion of this attempt included.
    await rename(data, `${data}.away`);
    let stderr = "";
    gateway.child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    await until(
      () =>
        gateway.child.exitCode !== null ||
        gateway.lines.some((l) => l.includes("the store cannot be reached; the attempt waits for it")),
      20_000,
      { what: "the completion to meet the missing store" },
    );
    expect(gateway.child.exitCode, stderr).toBeNull();
    expect((await getTask(gateway.url, id)).status).toBe("processing");

    await rename(`${data}.away`, data);
    const done = await until(async () => {
      const task = await getTask(gateway.url, id);
      return task.status !== "processing" && task;
    }, 20_000);
    expect(done).toMatchObject({ status: "completed", attempts: 1, machine: "gpu" });
    expect(await startedJobs(worker)).toHaveLength(1);
    expect((await fetch(`${gateway.url}/tasks/${id}/result`)).status).toBe(200);
    expect(gateway.child.exitCode).toBeNull();
  });
});
