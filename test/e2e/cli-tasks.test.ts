import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { CLI, run } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

/**
 * Issue 11: the CLI on tasks that fail or are stopped. The machine's engine is a GateEngine, so
 * the test decides when a run fails or ends, and a task can be caught while it runs.
 */
describe("multi-heygem submit and tasks, on tasks that fail or are cancelled", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: Awaited<ReturnType<typeof startLocalWorker>>;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  function cli(args: string[]) {
    return run(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: {
        LANG: "C",
        LC_ALL: "",
        LC_MESSAGES: "",
        MULTI_HEYGEM_URL: gateway.url,
        MULTI_HEYGEM_API_KEY: "",
      },
    });
  }

  /** The one task now at the engine's gate, and its id at the gateway. */
  async function running(): Promise<{ job: string; task: string }> {
    const [job] = await until(() => (engine.running.length === 1 ? engine.running : undefined));
    const page = await until(async () => {
      const res = await cli(["tasks", "--json", "--status", "processing"]);
      const body = JSON.parse(res.stdout) as { tasks: { task_id: string }[] };
      return body.tasks.length === 1 ? body : undefined;
    });
    return { job: job ?? "", task: page.tasks[0]?.task_id ?? "" };
  }

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({
        machines: [{ name: "gpu", host: "127.0.0.1", port: worker.port, max_concurrent: 1 }],
      }),
    );
    gateway = await startTestGateway({ config: join(dir, "machines.json") }, join(dir, "gateway"));
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterAll(async () => {
    await gateway.close();
    await worker.close();
    await removeDir(dir);
  });

  it("a task that fails: its reason, the summary, and exit 1", async () => {
    const submit = cli(["submit", "--audio", "a.wav", "--video", "v.mp4", "--wait", "--out", "failed.mp4"]);
    const { job } = await running();
    engine.fail(job, "input", "no face in the video");
    const res = await submit;
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("a.wav: processing on gpu\n");
    expect(res.stderr).toMatch(/^a\.wav: failed: .*no face in the video.*$/m);
    expect(res.stderr).toMatch(/\n0 completed, 1 failed, 0 cancelled in \d+:\d\d\n$/);
    expect(res.stdout).toBe("");
  });

  it("tasks cancel stops a running task (the waiting submit exits 1) and retry runs it again", async () => {
    const submit = cli([
      "submit",
      "--audio",
      "a.wav",
      "--video",
      "v.mp4",
      "--wait",
      "--out",
      "cancelled.mp4",
    ]);
    const { task } = await running();

    const cancelled = await cli(["tasks", "cancel", task]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stderr).toBe(`task ${task}: cancelled\n`);
    const waited = await submit;
    expect(waited.code).toBe(1);
    expect(waited.stderr).toMatch(/\n0 completed, 0 failed, 1 cancelled in \d+:\d\d\n$/);
    await until(() => engine.running.length === 0);

    const retried = await cli(["tasks", "retry", task]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stderr).toBe(`task ${task}: pending\n`);
    const again = await running();
    expect(again.task).toBe(task);
    engine.release(again.job);
    await until(async () => /^status +completed$/m.test((await cli(["tasks", "show", task])).stdout));
  });

  it("tasks delete removes a finished task", async (ctx) => {
    // DELETE /tasks/{id} comes in another branch of issue 11; this test starts running once the
    // gateway's OpenAPI document lists it.
    const doc = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    if (!doc.paths["/tasks/{task_id}"]?.delete) ctx.skip();
    const submit = cli(["submit", "--audio", "a.wav", "--video", "v.mp4", "--wait", "--out", "deleted.mp4"]);
    const { job, task } = await running();
    engine.release(job);
    expect((await submit).code).toBe(0);

    const deleted = await cli(["tasks", "delete", task]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stderr).toBe(`task ${task}: deleted\n`);
    const gone = await cli(["tasks", "show", task]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^multi-heygem: NOT_FOUND: [^\n]+\n$/);
  });

  it("Ctrl-C stops following (exit 130, nothing half-saved) and leaves the task to the gateway", async () => {
    const child = spawn(
      process.execPath,
      [CLI, "submit", "--audio", "a.wav", "--video", "v.mp4", "--wait", "--out", "interrupted.mp4"],
      {
        cwd: dir,
        env: { ...process.env, LANG: "C", LC_ALL: "", MULTI_HEYGEM_URL: gateway.url },
        stdio: "pipe",
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = once(child, "exit");
    const { job, task } = await running();
    await until(() => stderr.includes("a.wav: processing on gpu"));
    child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    expect(code).toBe(130);
    expect(stderr).toMatch(/\ninterrupted: the tasks go on at the gateway \(see multi-heygem tasks\)\n$/);
    expect((await readdir(dir)).filter((f) => f.startsWith("interrupted"))).toEqual([]);
    engine.release(job);
    await until(async () => /^status +completed$/m.test((await cli(["tasks", "show", task])).stdout));
  });

  it("tasks cancel of a task that is already finished is the gateway's refusal, exit 1", async () => {
    const submit = cli(["submit", "--audio", "a.wav", "--video", "v.mp4", "--wait", "--out", "done.mp4"]);
    const { job, task } = await running();
    engine.release(job);
    expect((await submit).code).toBe(0);
    const res = await cli(["tasks", "cancel", task]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^multi-heygem: [A-Z_]+: [^\n]+\n$/);
  });
});
