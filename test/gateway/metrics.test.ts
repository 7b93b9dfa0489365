import { readFile, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/gateway/clock.js";
import { checkReadiness } from "../../src/gateway/readiness.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { heygemHarness } from "../engines/heygem/harness.js";
import { writeMachines } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { type Scrape, sampleValue, scrape } from "../helpers/prometheus.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/** A loopback port nothing listens on (taken, then given back). */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });

/**
 * One gateway, one worker in front of a GateEngine: four tasks whose fates the test decides (two
 * succeed, one fails as the input's fault, one loses an attempt to a machine failure and then
 * succeeds), then both /metrics are scraped and every figure checked against what happened.
 */
describe("GET /metrics on the gateway and the worker", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let gateway: Gateway;
  let receiver: Receiver;
  let audioBytes: number;
  let videoBytes: number;
  let gatewayScrape: Scrape;
  let workerScrape: Scrape;
  let heygemScrape: Scrape;
  const heygem = heygemHarness();

  beforeAll(async () => {
    dir = await tempDir();
    const audio = join(dir, "a.wav");
    const video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    audioBytes = (await stat(audio)).size;
    videoBytes = (await stat(video)).size;
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    receiver = await startReceiver();
    const machines = join(dir, "machines.json");
    await writeMachines(machines, [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }]);
    gateway = await startTestGateway({ config: machines, maxAttempts: "2" }, join(dir, "gateway"));

    const submit = async (extra: Record<string, string> = {}) => {
      const res = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ audio: { path: audio }, video: { path: video }, ...extra }),
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { task_id: string }).task_id;
    };
    /** The engine's n-th job (1-based), once it waits at the gate. */
    const job = async (n: number) => {
      const id = await until(() => engine.started.length >= n && engine.started[n - 1]?.id);
      await until(() => engine.isRunning(id));
      return id;
    };
    const settled = (id: string, status: string) =>
      until(async () => (await gateway.store.getTask(id))?.status === status, 10_000, { what: status });

    const first = await submit({ callback_url: receiver.url });
    engine.release(await job(1));
    await settled(first, "completed");
    const second = await submit();
    engine.release(await job(2));
    await settled(second, "completed");
    const third = await submit();
    engine.fail(await job(3), "input", "no face in the video");
    await settled(third, "failed");
    const fourth = await submit();
    engine.fail(await job(4), "machine", "out of GPU memory");
    engine.release(await job(5));
    await settled(fourth, "completed");

    // queued, dispatched and completed of the first task, each delivered and settled in the store.
    await until(async () => {
      gatewayScrape = await scrape(gateway.url);
      return sampleValue(gatewayScrape, "multi_heygem_callback_deliveries", { state: "delivered" }) === 3;
    });
    workerScrape = await scrape(worker.url);

    // A HeyGem worker with one container that answers and one whose address nothing listens on.
    const live = heygem.instanceOf(await heygem.emulator());
    const gone = {
      name: "gone",
      url: `http://127.0.0.1:${await closedPort()}`,
      dataDir: await heygem.tempDir(),
    };
    const heygemWorker = await heygem.worker([live, gone]);
    await until(async () => {
      heygemScrape = await scrape(heygemWorker.handle.url);
      return (
        sampleValue(heygemScrape, "multi_heygem_worker_container_healthy", { container: live.name }) === 1
      );
    });
  });

  afterAll(async () => {
    await gateway?.close();
    await worker?.close();
    await receiver?.close();
    await heygem.cleanup();
    await removeDir(dir);
  });

  it("counts the gateway's tasks, queue, attempts, failures, uploads and callbacks", () => {
    const g = gatewayScrape;
    expect(sampleValue(g, "multi_heygem_tasks", { status: "completed" })).toBe(3);
    expect(sampleValue(g, "multi_heygem_tasks", { status: "failed" })).toBe(1);
    expect(sampleValue(g, "multi_heygem_tasks", { status: "pending" })).toBe(0);
    expect(sampleValue(g, "multi_heygem_tasks", { status: "processing" })).toBe(0);
    expect(sampleValue(g, "multi_heygem_queue_depth")).toBe(0);
    expect(sampleValue(g, "multi_heygem_tasks_created_total")).toBe(4);

    const onGpu = { machine: "gpu-1" };
    expect(sampleValue(g, "multi_heygem_attempts_total", { ...onGpu, outcome: "succeeded" })).toBe(3);
    expect(sampleValue(g, "multi_heygem_attempts_total", { ...onGpu, outcome: "failed" })).toBe(2);
    expect(sampleValue(g, "multi_heygem_attempt_failures_total", { ...onGpu, kind: "input" })).toBe(1);
    expect(sampleValue(g, "multi_heygem_attempt_failures_total", { ...onGpu, kind: "machine" })).toBe(1);

    // Five attempts started (the fourth task waited twice), five ended.
    expect(sampleValue(g, "multi_heygem_task_wait_seconds_count")).toBe(5);
    expect(sampleValue(g, "multi_heygem_task_wait_seconds_bucket", { le: "+Inf" })).toBe(5);
    expect(sampleValue(g, "multi_heygem_attempt_run_seconds_count", { ...onGpu, outcome: "succeeded" })).toBe(
      3,
    );
    expect(sampleValue(g, "multi_heygem_attempt_run_seconds_count", { ...onGpu, outcome: "failed" })).toBe(2);

    expect(sampleValue(g, "multi_heygem_upload_bytes_total", { field: "audio" })).toBe(4 * audioBytes);
    expect(sampleValue(g, "multi_heygem_upload_bytes_total", { field: "video" })).toBe(4 * videoBytes);
    // Each upload was held in memory until its hash was known, and gave its bytes back.
    expect(sampleValue(g, "multi_heygem_upload_held_bytes")).toBe(0);

    expect(sampleValue(g, "multi_heygem_callback_deliveries", { state: "pending" })).toBe(0);
    expect(sampleValue(g, "multi_heygem_callback_deliveries", { state: "given_up" })).toBe(0);
    expect(receiver.received.map((r) => r.body.event)).toEqual(["queued", "dispatched", "completed"]);
  });

  it("reports the machines by state, with their running attempts and capacity", () => {
    const g = gatewayScrape;
    expect(sampleValue(g, "multi_heygem_machines", { state: "up" })).toBe(1);
    expect(sampleValue(g, "multi_heygem_machines")).toBe(1);
    expect(sampleValue(g, "multi_heygem_machine_up", { machine: "gpu-1" })).toBe(1);
    expect(sampleValue(g, "multi_heygem_machine_running", { machine: "gpu-1" })).toBe(0);
    expect(sampleValue(g, "multi_heygem_machine_capacity", { machine: "gpu-1" })).toBe(1);
  });

  it("counts the worker's jobs by status and failure kind, and its engine's seconds", () => {
    const w = workerScrape;
    expect(sampleValue(w, "multi_heygem_worker_jobs_total", { status: "succeeded" })).toBe(3);
    expect(sampleValue(w, "multi_heygem_worker_jobs_total", { status: "failed", kind: "input" })).toBe(1);
    expect(sampleValue(w, "multi_heygem_worker_jobs_total", { status: "failed", kind: "machine" })).toBe(1);
    expect(sampleValue(w, "multi_heygem_worker_jobs_total", { status: "cancelled" })).toBeUndefined();
    expect(sampleValue(w, "multi_heygem_worker_engine_seconds_count", { status: "succeeded" })).toBe(3);
    expect(sampleValue(w, "multi_heygem_worker_engine_seconds_count", { status: "failed" })).toBe(2);
    expect(sampleValue(w, "multi_heygem_worker_jobs", { state: "running" })).toBe(0);
    expect(sampleValue(w, "multi_heygem_worker_jobs", { state: "queued" })).toBe(0);
    expect(sampleValue(w, "multi_heygem_worker_capacity")).toBe(1);
    // The gate engine drives no containers: no instance is reported rather than a made-up one.
    expect(sampleValue(w, "multi_heygem_worker_container_healthy")).toBeUndefined();
  });

  it("reports each HeyGem container as healthy or not, and whether it renders", () => {
    const h = heygemScrape;
    expect(sampleValue(h, "multi_heygem_worker_container_healthy", { container: "gone" })).toBe(0);
    expect(sampleValue(h, "multi_heygem_worker_container_busy", { container: "gone" })).toBe(0);
    expect(sampleValue(h, "multi_heygem_worker_capacity")).toBe(2);
    expect(h.samples.filter((s) => s.name === "multi_heygem_worker_container_healthy")).toHaveLength(2);
  });

  it("names its metrics by Prometheus' conventions, with the process metrics beside them", () => {
    for (const s of [gatewayScrape, workerScrape]) {
      const ours = [...s.types].filter(([name]) => name.startsWith("multi_heygem_"));
      expect(ours.length).toBeGreaterThan(10);
      for (const [name, type] of ours) {
        if (type === "counter") expect(name).toMatch(/_total$/);
        if (type === "histogram") expect(name).toMatch(/_seconds$/);
      }
    }
    expect(sampleValue(gatewayScrape, "multi_heygem_gateway_process_resident_memory_bytes")).toBeGreaterThan(
      0,
    );
    expect(sampleValue(workerScrape, "multi_heygem_worker_process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("the example Grafana dashboard queries only metrics a real scrape has", async () => {
    const file = new URL("../../examples/grafana-dashboard.json", import.meta.url);
    const dashboard: unknown = JSON.parse(await readFile(file, "utf8"));
    const exprs: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === "object")
        for (const [key, value] of Object.entries(node)) {
          if ((key === "expr" || key === "query") && typeof value === "string") exprs.push(value);
          else walk(value);
        }
    };
    walk(dashboard);
    const referenced = new Set(exprs.flatMap((e) => e.match(/\bmulti_heygem_[a-z0-9_]+/g) ?? []));
    expect(referenced.size).toBeGreaterThanOrEqual(8);
    const all = [...gatewayScrape.samples, ...workerScrape.samples, ...heygemScrape.samples];
    const scraped = new Set(all.map((s) => s.name));
    expect([...referenced].filter((name) => !scraped.has(name))).toEqual([]);
  });
});

describe("GET /healthz and GET /readyz", () => {
  let dir: string;
  let worker: WorkerHandle | undefined;
  let gateway: Gateway | undefined;

  afterEach(async () => {
    await gateway?.close();
    await worker?.close();
    gateway = undefined;
    worker = undefined;
    await removeDir(dir);
  });

  it("is not ready while no machine is up, naming the check; ready once one is", async () => {
    dir = await tempDir();
    const machines = join(dir, "machines.json");
    await writeMachines(machines, [{ name: "gone", port: await closedPort(), max_concurrent: 1 }]);
    gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));

    const live = await fetch(`${gateway.url}/healthz`);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: "ok" });

    const down = await fetch(`${gateway.url}/readyz`);
    expect(down.status).toBe(503);
    const body = (await down.json()) as {
      status: string;
      failing: string[];
      checks: { store: { ok: boolean }; disk: { ok: boolean; free_bytes: number }; machines: object };
    };
    expect(body.status).toBe("not_ready");
    expect(body.failing).toEqual(["machines"]);
    expect(body.checks.machines).toEqual({ ok: false, up: 0, total: 1, embedded: false });
    expect(body.checks.store.ok).toBe(true);
    expect(body.checks.disk.ok).toBe(true);
    expect(body.checks.disk.free_bytes).toBeGreaterThan(0);

    worker = await startLocalWorker(join(dir, "worker"), new GateEngine(1));
    await writeMachines(machines, [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }]);
    const url = gateway.url;
    const ready = await until(async () => {
      const res = await fetch(`${url}/readyz`);
      return res.status === 200 && ((await res.json()) as { status: string; failing: string[] });
    });
    expect(ready).toMatchObject({ status: "ready", failing: [] });
  });

  it("the embedded worker makes the gateway ready without any machine file", async () => {
    dir = await tempDir();
    gateway = await startTestGateway({}, join(dir, "gateway"));
    const res = await fetch(`${gateway.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ready", checks: { machines: { embedded: true } } });
  });

  it("the store check fails, by name, while another connection holds the store's write lock", async () => {
    dir = await tempDir();
    gateway = await startTestGateway({}, join(dir, "gateway"));
    const other = new SQLite(join(gateway.dataDir, "multi-heygem.db"));
    try {
      other.exec("BEGIN IMMEDIATE");
      // The probe waits out SQLite's busy timeout (5 s), then reports the store as failing.
      const res = await fetch(`${gateway.url}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { failing: string[]; checks: { store: { error?: string } } };
      expect(body.failing).toEqual(["store"]);
      expect(body.checks.store.error).toMatch(/locked|busy/i);
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
  }, 20_000);

  it("the disk check fails, by name, below its floor", async () => {
    dir = await tempDir();
    gateway = await startTestGateway({}, join(dir, "gateway"));
    const verdict = await checkReadiness({
      db: gateway.store.db,
      clock: systemClock,
      fleet: gateway.fleet,
      dataDir: gateway.dataDir,
      embedded: true,
      minFreeDiskBytes: Number.MAX_SAFE_INTEGER,
      accepting: true,
    });
    expect(verdict.ready).toBe(false);
    expect(verdict.failing).toEqual(["disk"]);
    expect(verdict.checks.disk).toMatchObject({ ok: false, floor_bytes: Number.MAX_SAFE_INTEGER });
    expect(verdict.checks.disk.free_bytes).toBeGreaterThan(0);
  });

  it("a worker answers /healthz without its token; /metrics and /v1 still need it", async () => {
    dir = await tempDir();
    const { startWorker } = await import("../../src/worker/agent.js");
    const { createLogger } = await import("../../src/logger.js");
    worker = await startWorker({
      host: "127.0.0.1",
      port: 0,
      dataDir: join(dir, "worker"),
      engine: new GateEngine(2),
      token: "s3cret",
      logger: createLogger({ level: "silent", format: "json" }),
    });
    const health = await fetch(`${worker.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    expect((await fetch(`${worker.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${worker.url}/v1/health`)).status).toBe(401);
    const s = await scrape(worker.url, { authorization: "Bearer s3cret" });
    expect(sampleValue(s, "multi_heygem_worker_capacity")).toBe(2);
  });
});

describe("a gateway with an embedded worker", () => {
  let dir: string;
  let gateway: Gateway;

  afterAll(async () => {
    await gateway?.close();
    await removeDir(dir);
  });

  it("exports the embedded worker's metrics with its own, once", async () => {
    dir = await tempDir();
    const audio = join(dir, "a.wav");
    const video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    gateway = await startTestGateway({}, join(dir, "gateway"));
    const res = await fetch(`${gateway.url}/tasks/sync`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const g = await scrape(gateway.url);
    expect(sampleValue(g, "multi_heygem_attempts_total", { machine: "embedded", outcome: "succeeded" })).toBe(
      1,
    );
    expect(sampleValue(g, "multi_heygem_worker_jobs_total", { status: "succeeded" })).toBe(1);
    expect(sampleValue(g, "multi_heygem_worker_engine_seconds_count")).toBe(1);
    // The process metrics are the gateway's only: one process, one set.
    expect(sampleValue(g, "multi_heygem_gateway_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(sampleValue(g, "multi_heygem_worker_process_resident_memory_bytes")).toBeUndefined();
  });
});
