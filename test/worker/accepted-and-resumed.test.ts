import { afterEach, describe, expect, it } from "vitest";
import type { EngineJob, EngineRunContext, ResumeState } from "../../src/engines/engine.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { workerHarness } from "./harness.js";

/** An engine whose backend must take a job first, and which can follow it again after a restart. */
class BackendEngine extends GateEngine {
  readonly startsWhenAccepted = true;
  readonly resumed: { id: string; state: ResumeState }[] = [];

  resume(job: EngineJob, state: ResumeState, ctx: EngineRunContext): Promise<void> {
    this.resumed.push({ id: job.id, state });
    return this.run(job, ctx);
  }
}

const h = workerHarness();
afterEach(() => h.cleanup());

describe("job runner with an engine whose backend accepts jobs", () => {
  it("keeps a job queued, holding its slot, until the engine says the backend took it", async () => {
    const w = await h.start({ engine: new BackendEngine(1) });
    const body = await h.inputs(w);
    await w.putJob("a1", body);
    await w.putJob("a2", body);
    await until(() => w.engine.isRunning("a1"));
    expect(await w.job("a1")).toMatchObject({ status: "queued" });
    expect((await w.job("a1")).started_at).toBeUndefined();
    const health = (await (await w.call("/v1/health")).json()) as { running: string[]; queued: string[] };
    expect(health).toMatchObject({ running: [], queued: ["a1", "a2"] });

    w.engine.accept("a1", { code: "c1" });
    expect(await w.job("a1")).toMatchObject({ status: "running" });
    expect((await w.job("a1")).started_at).toBeDefined();
    w.engine.release("a1");
    await until(async () => (await w.job("a1")).status === "succeeded");
    await until(() => w.engine.isRunning("a2"));
  });

  it("cancels a job that waits for the backend", async () => {
    const w = await h.start({ engine: new BackendEngine(1) });
    await w.putJob("a1", await h.inputs(w));
    await until(() => w.engine.isRunning("a1"));
    const res = await w.call("/v1/jobs/a1", { method: "DELETE" });
    expect(((await res.json()) as { status: string }).status).toBe("cancelled");
    expect(w.engine.isRunning("a1")).toBe(false);
  });

  it("leaves accepted jobs running and waiting jobs queued over a restart, then resumes them", async () => {
    const first = await h.start({ engine: new BackendEngine(2) });
    const body = await h.inputs(first);
    await first.putJob("a1", body);
    await first.putJob("a2", body);
    await until(() => first.engine.isRunning("a1") && first.engine.isRunning("a2"));
    first.engine.accept("a1", { code: "c1" });
    await first.handle.close();

    const engine = new BackendEngine(2);
    const second = await h.start({ engine, dataDir: first.dataDir });
    expect(await second.job("a1")).toMatchObject({ status: "running" });
    await until(() => engine.isRunning("a1") && engine.isRunning("a2"));
    expect(engine.resumed).toEqual([{ id: "a1", state: { code: "c1" } }]);
    expect(await second.job("a2")).toMatchObject({ status: "queued" });
    engine.release("a1");
    await until(async () => (await second.job("a1")).status === "succeeded");
  });

  it("fails a running job after a restart when the engine cannot resume it", async () => {
    const first = await h.start({ engine: new BackendEngine(1) });
    await first.putJob("a1", await h.inputs(first));
    await until(() => first.engine.isRunning("a1"));
    first.engine.accept("a1", { code: "c1" });
    await first.handle.close();

    // The same records, but an engine without `resume`.
    const second = await h.start({ engine: new GateEngine(1), dataDir: first.dataDir });
    expect(await second.job("a1")).toMatchObject({ status: "failed", error: { kind: "machine" } });
  });
});
