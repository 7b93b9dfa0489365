import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { CLI, killAll, startGatewayProcess } from "../helpers/processes.js";
import { startReceiver } from "../helpers/receiver.js";
import { until } from "../helpers/until.js";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Issue 10, "Logs an operator can read". */
describe("the gateway's log", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("json: ISO times, and a start-up line naming the machines file, the machines, the data dir and the embedded worker", async () => {
    const data = join(dir, "json");
    const gateway = await startGatewayProcess(["--log-format", "json", "--data-dir", data], { cwd: dir });
    const lines = gateway.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.every((l) => typeof l.time === "string" && ISO.test(l.time))).toBe(true);
    expect(lines.find((l) => l.msg === "gateway listening")).toMatchObject({
      data_dir: data,
      machines_file: null,
      machines: ["embedded"],
      embedded_worker: true,
    });
  });

  it("task lines carry the description, shortened; a delivered callback is not an info line", async () => {
    const gateway = await startGatewayProcess(["--log-format", "json", "--data-dir", join(dir, "tasks")], {
      cwd: dir,
    });
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1, width: 64, height: 64 });
    const receiver = await startReceiver();
    const description = `promo clip for the autumn campaign ${"x".repeat(200)}`;
    const form = await taskForm({
      audio: { path: join(dir, "a.wav") },
      video: { path: join(dir, "v.mp4") },
      description,
      callback_url: receiver.url,
    });
    const created = (await (await fetch(`${gateway.url}/tasks`, { method: "POST", body: form })).json()) as {
      task_id: string;
    };
    await until(() => receiver.received.some((r) => r.body.status === "completed"));
    await receiver.close();
    // The callback can arrive before the child's log line about it has reached our pipe.
    await until(() => gateway.lines.some((l) => l.includes('"task completed"')));
    const lines = gateway.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const about = lines.filter((l) => l.task_id === created.task_id);
    const created_ = about.find((l) => l.msg === "task created");
    const completed = about.find((l) => l.msg === "task completed");
    for (const line of [created_, completed]) {
      expect(line?.description).toMatch(/^promo clip for the autumn campaign x+…$/);
      expect(String(line?.description).length).toBe(60);
    }
    expect(about.some((l) => l.msg === "callback delivered")).toBe(false);
  });

  it("pretty: one readable line per event, with the same ISO times", async () => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-format",
        "pretty",
        "--data-dir",
        join(dir, "pretty"),
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("gateway listening")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    child.kill("SIGKILL");
    const listening = out.split("\n").find((l) => l.includes("gateway listening")) ?? "";
    expect(listening).toMatch(/^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO: gateway listening/);
    expect(out).not.toContain('{"level"');
  });
});
