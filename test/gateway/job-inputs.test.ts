import { writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEngine } from "../../src/engines/registry.js";
import { createLogger } from "../../src/logger.js";
import { startWorker } from "../../src/worker/agent.js";
import { createTask, getTask } from "../helpers/fleet.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio } from "../helpers/media.js";
import { makeTaskInputs, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

/**
 * What the gateway asks of a worker to start a task (issue 14: dispatch latency and CPU per task).
 * A real worker behind a recording HTTP proxy: every request it forwards, and every connection the
 * gateway opened to it.
 */
interface Recorder {
  port: number;
  readonly requests: string[];
  connections: number;
  close(): Promise<void>;
}

async function startRecorder(targetPort: number): Promise<Recorder> {
  const requests: string[] = [];
  const recorder: Recorder = { port: 0, requests, connections: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (!path.startsWith("/v1/health")) requests.push(`${req.method} ${path}`);
    const upstream = httpRequest(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  // As long as the worker's own (Fastify: 72 s), so the proxy closes no connection the worker would keep.
  server.keepAliveTimeout = 72_000;
  server.on("connection", () => {
    recorder.connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  recorder.port = (server.address() as AddressInfo).port;
  recorder.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return recorder;
}

let fixtures: string;
let inputs: TaskInputs;
beforeAll(async () => {
  fixtures = await tempDir();
  inputs = await makeTaskInputs(fixtures);
  return () => removeDir(fixtures);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

describe("starting a task on a worker", () => {
  it("sends the task's new audio before its job, asks nothing it knows, and keeps its connections", async () => {
    const dir = await tempDir();
    cleanups.push(() => removeDir(dir));
    const logger = createLogger({ level: "silent", format: "json" });
    const engine = createEngine("ffmpeg", { maxConcurrent: 1, logger });
    const worker = await startWorker({
      host: "127.0.0.1",
      port: 0,
      dataDir: join(dir, "worker"),
      engine,
      logger,
    });
    cleanups.push(async () => {
      await worker.close();
      await engine.close?.();
    });
    const recorder = await startRecorder(worker.port);
    cleanups.push(() => recorder.close());
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({ machines: [{ name: "gpu", host: "127.0.0.1", port: recorder.port }] }),
    );
    const gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
    cleanups.push(() => gateway.close());
    await until(() => gateway.fleet.get("gpu")?.state === "up");

    const audios = [inputs.audio];
    for (let i = 0; i < 3; i++) {
      const path = join(dir, `speech-${i}.m4a`);
      // Lengths no other input has: each is new content.
      await makeAudio(path, { seconds: 1.3 + i / 10 });
      audios.push(path);
    }
    for (const audio of audios) {
      const id = await createTask(gateway.url, audio, inputs.video);
      const done = await until(async () => {
        const t = await getTask(gateway.url, id);
        if (t.status === "failed") throw new Error(`task ${id} failed: ${t.error_message}`);
        return t.status === "completed" && t;
      }, 60_000);
      expect(done.attempts).toBe(1);
    }
    await until(() => recorder.requests.filter((r) => r.startsWith("DELETE /v1/jobs/")).length === 4);

    // Once the machine holds the template, a task's start is its audio, then its job: no job
    // refused for a missing input (409 BLOB_MISSING), no question about a blob (HEAD).
    const putJobs = recorder.requests.filter((r) => r.startsWith("PUT /v1/jobs/"));
    expect(putJobs).toHaveLength(4);
    expect(recorder.requests.filter((r) => r.startsWith("HEAD "))).toHaveLength(0);
    const later = recorder.requests.slice(recorder.requests.indexOf(putJobs[0] ?? "") + 1);
    const uploadsAfterFirstJob = later.filter((r) => r.startsWith("PUT /v1/blobs/"));
    // Three new audios, each once; the template not again.
    expect(uploadsAfterFirstJob).toHaveLength(3);
    for (const upload of uploadsAfterFirstJob) {
      const next = later[later.indexOf(upload) + 1];
      expect(next).toMatch(/^PUT \/v1\/jobs\//);
    }
    // Health probes, long-polls and uploads share a few kept-alive connections, not one per request.
    expect(recorder.connections).toBeLessThanOrEqual(4);
  }, 120_000);
});
