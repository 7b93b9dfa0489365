import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/commands/", import.meta.url));

/**
 * Issue 9: "error messages never show internal paths". A job's failure travels from the engine
 * through the worker and the gateway to the client's `error_message`; the worker's folders stay
 * out of it, whatever the engine or its command said.
 */
describe("failure messages", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
  });
  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  async function failedTask(command: string): Promise<string> {
    const workerData = join(dir, "worker-data");
    const worker = await startWorkerProcess([
      "--data-dir",
      workerData,
      "--engine",
      "command",
      "--command",
      command,
    ]);
    const machines = join(dir, "machines.json");
    const port = Number(new URL(worker.url).port);
    await writeFile(machines, JSON.stringify({ machines: [{ name: "box", host: "127.0.0.1", port }] }));
    const gateway: Started = await startGatewayProcess(
      [
        "--config",
        machines,
        "--data-dir",
        join(dir, "gw"),
        "--max-attempts",
        "1",
        "--health-interval",
        "100",
      ],
      { cwd: dir },
    );
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    const { task_id } = (await res.json()) as { task_id: string };
    const task = await until(
      async () => {
        const t = (await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as {
          status: string;
          error_message: string | null;
        };
        return t.status === "failed" && t;
      },
      60_000,
      { what: "the task to fail" },
    );
    expect(task.error_message ?? "").not.toContain(workerData);
    expect(task.error_message ?? "").not.toContain(dir);
    return task.error_message ?? "";
  }

  it("a command that prints its own file names on failure", async () => {
    const message = await failedTask(`'${process.execPath}' '${join(FIXTURES, "fail.mjs")}' 1 0 {output}`);
    expect(message).toContain("<worker data dir>");
  });

  it("a command that exits 0 without writing {output}", async () => {
    const message = await failedTask(`'${process.execPath}' '${join(FIXTURES, "fail.mjs")}' 0 0 {output}`);
    expect(message).toContain("exited 0 but wrote nothing to {output}");
  });
});
