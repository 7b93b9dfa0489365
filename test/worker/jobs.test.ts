import { readFile, stat } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Health, JobView } from "../../src/protocol/schemas.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { sha256, workerHarness } from "./harness.js";

const h = workerHarness();
afterEach(() => h.cleanup());

describe("worker jobs", () => {
  it("creates a job once and answers a repeated PUT with the same job", async () => {
    const w = await h.start();
    const body = await h.inputs(w);

    const created = await w.putJob("a1", body);
    expect(created.status).toBe(201);
    const view = (await created.json()) as JobView;
    expect(view).toMatchObject({ id: "a1", progress: 0 });

    const again = await w.putJob("a1", { ...body, options: { chaofen: 0, watermark_switch: 0, pn: 1 } });
    expect(again.status).toBe(200);
    expect(((await again.json()) as JobView).id).toBe("a1");

    await until(() => w.engine.isRunning("a1"));
    expect(w.engine.started).toHaveLength(1);
  });

  it("refuses the same id with other inputs", async () => {
    const w = await h.start();
    const body = await h.inputs(w);
    expect((await w.putJob("a1", body)).status).toBe(201);

    const other = await w.putJob("a1", { ...body, options: { chaofen: 1, watermark_switch: 0, pn: 1 } });
    expect(other.status).toBe(409);
    expect(await other.json()).toMatchObject({ error: "JOB_CONFLICT" });
  });

  it("names the blob that has not been uploaded", async () => {
    const w = await h.start();
    const audio = await w.uploadBlob("audio");
    const res = await w.putJob("a1", { audio, video: { sha256: sha256("never sent"), bytes: 10 } });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: "BLOB_MISSING", field: "video" });
    expect((await w.call("/v1/jobs/a1")).status).toBe(404);
  });

  it("runs at most capacity jobs and queues the rest in arrival order", async () => {
    const w = await h.start({ engine: new GateEngine(2) });
    const body = await h.inputs(w);
    for (const id of ["j1", "j2", "j3"]) expect((await w.putJob(id, body)).status).toBe(201);

    await until(() => w.engine.running.length === 2);
    const health = (await (await w.call("/v1/health")).json()) as Health;
    expect(health).toMatchObject({ protocol: 1, engine: "gate", max_concurrent: 2, queued: ["j3"] });
    expect(health.running.sort()).toEqual(["j1", "j2"]);
    expect(health.free_disk_bytes).toBeGreaterThan(0);
    expect((await w.job("j3")).status).toBe("queued");

    w.engine.release("j1");
    await until(() => w.engine.isRunning("j3"));
    expect((await w.job("j1")).status).toBe("succeeded");
    expect((await w.job("j3")).status).toBe("running");
    expect(w.engine.maxInFlight).toBe(2);
  });

  it("gives the engine linked inputs with their extensions and cleans the work dir", async () => {
    const w = await h.start();
    const body = await h.inputs(w);
    await w.putJob("a1", body);
    await until(() => w.engine.isRunning("a1"));

    const [job] = w.engine.started;
    expect(job?.audioPath).toMatch(/audio\.mp3$/);
    expect(job?.videoPath).toMatch(/video\.mp4$/);
    expect(await readFile(job?.audioPath ?? "", "utf8")).toBe("audio x");
    expect(job?.options).toEqual({ chaofen: 0, watermark_switch: 0, pn: 1 });

    w.engine.release("a1");
    await until(async () => (await w.job("a1")).status === "succeeded");
    await expect(stat(job?.workDir ?? "")).rejects.toThrow();
  });

  it("wakes a long-poll on the next change", async () => {
    const w = await h.start();
    await w.putJob("a1", await h.inputs(w));
    await until(() => w.engine.isRunning("a1"));
    const before = await w.job("a1");

    const poll = w.call(`/v1/jobs/a1?after_version=${before.version}&wait_ms=60000`);
    w.engine.progress("a1", 42, "lip-syncing");
    const after = (await (await poll).json()) as JobView;
    expect(after.version).toBeGreaterThan(before.version);
    expect(after).toMatchObject({ status: "running", progress: 42, message: "lip-syncing" });

    // A version the client has not seen yet is answered at once.
    const stale = await w.call(`/v1/jobs/a1?after_version=${before.version}&wait_ms=60000`);
    expect(((await stale.json()) as JobView).version).toBe(after.version);
  });

  it("serves the result whole, by range and by HEAD", async () => {
    const w = await h.start();
    await w.putJob("a1", await h.inputs(w));
    await until(() => w.engine.isRunning("a1"));

    const notYet = await w.call("/v1/jobs/a1/result");
    expect(notYet.status).toBe(409);
    expect(await notYet.json()).toMatchObject({ error: "JOB_NOT_FINISHED" });

    const output = Buffer.from("0123456789abcdef");
    w.engine.release("a1", output);
    const done = await until(async () => {
      const view = await w.job("a1");
      return view.status === "succeeded" && view;
    });
    expect(done.result).toEqual({ sha256: sha256(output), bytes: output.length });
    expect(done.progress).toBe(100);

    const whole = await w.call("/v1/jobs/a1/result");
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-type")).toBe("video/mp4");
    expect(whole.headers.get("accept-ranges")).toBe("bytes");
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(output);

    const part = await w.call("/v1/jobs/a1/result", { headers: { range: "bytes=2-5" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 2-5/16");
    expect(await part.text()).toBe("2345");

    const tail = await w.call("/v1/jobs/a1/result", { headers: { range: "bytes=-3" } });
    expect(tail.status).toBe(206);
    expect(await tail.text()).toBe("def");

    const beyond = await w.call("/v1/jobs/a1/result", { headers: { range: "bytes=16-" } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe("bytes */16");
    await beyond.body?.cancel();

    const head = await w.call("/v1/jobs/a1/result", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("16");
  });

  it("records an engine failure with its kind", async () => {
    const w = await h.start();
    await w.putJob("a1", await h.inputs(w));
    await until(() => w.engine.isRunning("a1"));
    w.engine.fail("a1", "input", "no face found in the video");
    const view = await until(async () => {
      const v = await w.job("a1");
      return v.status === "failed" && v;
    });
    expect(view.error).toEqual({ kind: "input", message: "no face found in the video" });
  });

  it("cancels a running job, frees its slot and forgets it", async () => {
    const w = await h.start();
    const body = await h.inputs(w);
    await w.putJob("a1", body);
    await w.putJob("a2", body);
    await until(() => w.engine.isRunning("a1"));

    const res = await w.call("/v1/jobs/a1", { method: "DELETE" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: "a1", status: "cancelled" });
    expect(w.engine.isRunning("a1")).toBe(false);
    expect((await w.call("/v1/jobs/a1")).status).toBe(404);
    await expect(stat(w.engine.started[0]?.workDir ?? "")).rejects.toThrow();

    await until(() => w.engine.isRunning("a2"));
    expect((await w.call("/v1/jobs/a1", { method: "DELETE" })).status).toBe(404);
  });

  it("cancels a queued job before it ever runs", async () => {
    const w = await h.start();
    const body = await h.inputs(w);
    await w.putJob("a1", body);
    await w.putJob("a2", body);
    await until(() => w.engine.isRunning("a1"));

    const res = await w.call("/v1/jobs/a2", { method: "DELETE" });
    expect(await res.json()).toMatchObject({ id: "a2", status: "cancelled" });
    w.engine.release("a1");
    await until(async () => (await w.job("a1")).status === "succeeded");
    expect(w.engine.started.map((j) => j.id)).toEqual(["a1"]);
  });

  it("answers 404 for a job it does not know", async () => {
    const w = await h.start();
    const res = await w.call("/v1/jobs/nope");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: "NOT_FOUND" });
  });

  it("requires the token on every call when one is configured", async () => {
    const w = await h.start({ token: "s3cret" });
    const url = w.handle.url;
    const none = await fetch(`${url}/v1/health`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: "UNAUTHORIZED" });
    const wrong = await fetch(`${url}/v1/jobs/a1`, { headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    await wrong.body?.cancel();
    expect((await w.call("/v1/health")).status).toBe(200);
  });
});
