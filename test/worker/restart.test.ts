import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { JobView } from "../../src/protocol/schemas.js";
import { JobRecords, RESTARTED_WHILE_RUNNING } from "../../src/worker/job-records.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { sha256, silentLogger, workerHarness } from "./harness.js";

const h = workerHarness();
afterEach(() => h.cleanup());

describe("worker restart", () => {
  it("serves finished jobs again, fails the running one and runs the queued one", async () => {
    const first = await h.start();
    const body = await h.inputs(first);
    for (const id of ["done", "busy", "waiting"]) await first.putJob(id, body);
    await until(() => first.engine.isRunning("done"));
    first.engine.release("done", Buffer.from("the finished video"));
    await until(() => first.engine.isRunning("busy"));
    await first.handle.close();

    const second = await h.start({ dataDir: first.dataDir });
    const done = await second.job("done");
    expect(done).toMatchObject({ status: "succeeded", result: { sha256: sha256("the finished video") } });
    expect(await (await second.call("/v1/jobs/done/result")).text()).toBe("the finished video");

    const busy = await second.job("busy");
    expect(busy.status).toBe("failed");
    expect(busy.error?.kind).toBe("machine");
    expect(busy.error?.message).toMatch(/worker agent/);

    await until(() => second.engine.isRunning("waiting"));
    expect(second.engine.started.map((j) => j.id)).toEqual(["waiting"]);
  });

  it("re-attaches a repeated PUT to the job it already finished", async () => {
    const first = await h.start();
    const body = await h.inputs(first);
    await first.putJob("a1", body);
    await until(() => first.engine.isRunning("a1"));
    first.engine.release("a1");
    await until(async () => (await first.job("a1")).status === "succeeded");
    await first.handle.close();

    const second = await h.start({ dataDir: first.dataDir });
    const res = await second.putJob("a1", body);
    expect(res.status).toBe(200);
    expect(((await res.json()) as JobView).status).toBe("succeeded");
    expect(second.engine.started).toHaveLength(0);
  });

  it("reports a job that was running when the process died as failed by the machine", async () => {
    const dataDir = await h.tempDir();
    // What a killed agent leaves behind: a record still saying `running`, and its work dir.
    const records = new JobRecords(join(dataDir, "jobs"), silentLogger);
    await records.loadAll();
    const ref = { sha256: sha256("x"), bytes: 1 };
    await records.save({
      seq: 0,
      input: { audio: ref, video: ref, options: { chaofen: 0, watermark_switch: 0, pn: 1 } },
      view: {
        id: "crashed",
        status: "running",
        progress: 30,
        created_at: new Date().toISOString(),
        version: 4,
      },
    });

    const w = await h.start({ dataDir, engine: new GateEngine(1) });
    const view = await w.job("crashed");
    expect(view).toMatchObject({
      status: "failed",
      error: { kind: "machine", message: RESTARTED_WHILE_RUNNING },
      version: 5,
    });
    expect(view.finished_at).toBeDefined();
  });

  it("forgets finished jobs and their results after the retention time", async () => {
    const w = await h.start({ resultRetentionMs: 200 });
    await w.putJob("a1", await h.inputs(w));
    await until(() => w.engine.isRunning("a1"));
    w.engine.release("a1");
    await until(async () => (await w.job("a1")).status === "succeeded");

    await until(async () => (await w.call("/v1/jobs/a1")).status === 404);
    expect(await readdir(join(w.dataDir, "results"))).toEqual([]);
    expect(await readdir(join(w.dataDir, "jobs"))).toEqual([]);
  });
});
