import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import {
  CLI,
  killAll,
  run,
  type Started,
  startGatewayProcess,
  startWorkerProcess,
} from "../helpers/processes.js";
import { until } from "../helpers/until.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/commands/", import.meta.url));

interface TaskJson {
  task_id: string;
  status: string;
  machine: string | null;
  error_message: string | null;
  error_kind: string | null;
  result_url: string;
}

/** `multi-heygem worker --engine command` behind a gateway, both real processes, as issue 3 has it. */
describe("a worker running a command-line engine", () => {
  let dir: string;
  let audio: string;
  let video: string;

  beforeEach(async () => {
    dir = await tempDir();
    audio = join(dir, "speech.wav");
    video = join(dir, "person.mp4");
    await makeAudio(audio, { seconds: 1.5 });
    await makeVideo(video, { seconds: 1.5, width: 128, height: 96 });
  });

  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  async function startFleet(command: string, extraWorkerArgs: string[] = []): Promise<Started> {
    const worker = await startWorkerProcess([
      "--data-dir",
      join(dir, "worker-data"),
      "--engine",
      "command",
      "--command",
      command,
      ...extraWorkerArgs,
    ]);
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({
        machines: [
          { name: "cli-box", host: "127.0.0.1", port: Number(new URL(worker.url).port), max_concurrent: 1 },
        ],
      }),
    );
    return startGatewayProcess([
      "--config",
      machines,
      "--data-dir",
      join(dir, "gateway-data"),
      "--health-interval",
      "100",
      // One machine: a machine fault should end the task rather than wait for another.
      "--max-attempts",
      "1",
    ]);
  }

  async function finished(gateway: Started, taskId: string): Promise<TaskJson> {
    return until(
      async () => {
        const task = (await (await fetch(`${gateway.url}/tasks/${taskId}`)).json()) as TaskJson;
        return (task.status === "completed" || task.status === "failed") && task;
      },
      60_000,
      { what: `task ${taskId} to finish` },
    );
  }

  async function submit(gateway: Started): Promise<string> {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as TaskJson).task_id;
  }

  it("completes a task with the MP4 the command wrote", async () => {
    const gateway = await startFleet(
      `'${process.execPath}' '${join(FIXTURES, "progress.mjs")}' {video} {output}`,
      ["--command-timeout", "60"],
    );

    const task = await finished(gateway, await submit(gateway));

    expect(task).toMatchObject({ status: "completed", machine: "cli-box" });
    const out = join(dir, "result.mp4");
    await writeFile(out, Buffer.from(await (await fetch(task.result_url)).arrayBuffer()));
    expect((await probe(out)).video).toMatchObject({ width: 128, height: 96 });
  });

  it("fails the task with the tail of what a failing command said on stderr", async () => {
    const gateway = await startFleet(
      `'${process.execPath}' '${join(FIXTURES, "fail.mjs")}' 1 40 'RuntimeError: CUDA out of memory' {output}`,
    );

    const task = await finished(gateway, await submit(gateway));

    expect(task.status).toBe("failed");
    expect(task.error_kind).toBe("machine");
    expect(task.error_message).toContain("exit code 1");
    expect(task.error_message).toContain("RuntimeError: CUDA out of memory");
    expect(task.error_message).not.toContain("log line 1 of");
  });

  it("fails at once, as the input's fault, on a declared exit code", async () => {
    const gateway = await startFleet(
      `'${process.execPath}' '${join(FIXTURES, "fail.mjs")}' 2 0 'ValueError: Face not detected!' {output}`,
      ["--command-input-exit-codes", "2"],
    );

    const task = await finished(gateway, await submit(gateway));

    expect(task).toMatchObject({ status: "failed", error_kind: "input" });
    expect(task.error_message).toContain("Face not detected!");
  });
});

describe("multi-heygem worker --engine command, at start-up", () => {
  it("a template without {output}, given through the environment, stops the worker naming the flag", async () => {
    const res = await run(process.execPath, [CLI, "worker", "--port", "0", "--engine", "command"], {
      env: { MULTI_HEYGEM_COMMAND: "python infer.py --audio {audio}" },
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("configuration error: --command: the command must contain {output}");
  });

  it("a bad timeout names its flag", async () => {
    const res = await run(process.execPath, [
      CLI,
      "worker",
      "--port",
      "0",
      "--engine",
      "command",
      "--command",
      `'${process.execPath}' {output}`,
      "--command-timeout",
      "ten",
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("--command-timeout");
  });
});
