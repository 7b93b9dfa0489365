import { readdir, stat, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createEngine } from "../../src/engines/registry.js";
import { createLogger } from "../../src/logger.js";
import { startWorker, type WorkerHandle } from "../../src/worker/agent.js";
import { cleanupsAfterEach } from "../helpers/cleanups.js";
import { createTask, getTask } from "../helpers/fleet.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { parseScrape, sampleValue } from "../helpers/prometheus.js";
import { taskInputsOfThisFile } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/** Blob files under a blob store's root (its `.tmp` excluded), and their bytes. */
async function blobFiles(root: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile() || e.parentPath.includes(".tmp")) continue;
    files++;
    bytes += (await stat(join(e.parentPath, e.name))).size;
  }
  return { files, bytes };
}

async function completedMp4(gateway: Gateway, id: string, dir: string): Promise<void> {
  const done = await until(async () => {
    const t = await getTask(gateway.url, id);
    if (t.status === "failed") throw new Error(`task ${id} failed: ${t.error_message}`);
    return t.status === "completed" && t;
  }, 60_000);
  expect(done.attempts).toBe(1);
  const res = await fetch(`${gateway.url}/tasks/${id}/result`);
  expect(res.status).toBe(200);
  const file = join(dir, `${id}.mp4`);
  await writeFile(file, Buffer.from(await res.arrayBuffer()));
  const media = await probe(file);
  expect(media.video).toBeDefined();
  expect(media.durationSec).toBeGreaterThan(0.5);
}

const inputs = taskInputsOfThisFile();

const cleanups = cleanupsAfterEach();

/**
 * An in-process worker agent on 127.0.0.1, stopped after the test: the ffmpeg engine, or with
 * `slow` the simulate engine taking 3 s per second of audio (a job that surely outlasts a request).
 */
async function startFfmpegWorker(dataDir: string, options: { cacheMaxBytes?: number; slow?: boolean } = {}) {
  const logger = createLogger({ level: "silent", format: "json" });
  const engine = options.slow
    ? createEngine("simulate", {
        maxConcurrent: 1,
        logger,
        config: { simulate: { speedFactor: 1, timeScale: 3 } },
      })
    : createEngine("ffmpeg", { maxConcurrent: 1, logger });
  const worker: WorkerHandle = await startWorker({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    engine,
    logger,
    ...(options.cacheMaxBytes === undefined ? {} : { cacheMaxBytes: options.cacheMaxBytes }),
  });
  cleanups.push(async () => {
    await worker.close();
    await engine.close?.();
  });
  return worker;
}

describe("a worker whose input cache evicted a blob", () => {
  it("gets it uploaded again by the gateway, and the task completes on its first attempt", async () => {
    const dir = await tempDir();
    cleanups.push(() => removeDir(dir));
    const workerDir = join(dir, "worker");
    // `--cache-max-gb 0.000000001`: one byte, so every input goes as soon as its job ends.
    const worker = await startFfmpegWorker(workerDir, { cacheMaxBytes: 1 });
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({ machines: [{ name: "gpu", host: "127.0.0.1", port: worker.port }] }),
    );
    const gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
    cleanups.push(() => gateway.close());
    await until(() => gateway.fleet.get("gpu")?.state === "up");

    const first = await createTask(gateway.url, inputs.audio, inputs.video);
    await completedMp4(gateway, first, dir);
    await until(async () => (await blobFiles(join(workerDir, "blobs"))).files === 0);
    // The gateway still believes the machine holds the template: the next task finds it gone.
    expect(gateway.fleet.get("gpu")?.hasBlob(await sha256Of(inputs.video))).toBe(true);

    const audio2 = join(dir, "other.m4a");
    await makeAudio(audio2, { seconds: 1.2 });
    const second = await createTask(gateway.url, audio2, inputs.video);
    await completedMp4(gateway, second, dir);

    // Both tasks' inputs went when their jobs ended: the template twice.
    const scrape = await until(async () => {
      const s = parseScrape(await (await fetch(`${worker.url}/metrics`)).text());
      return (sampleValue(s, "multi_heygem_worker_blob_cache_evictions_total") ?? 0) >= 4 && s;
    });
    expect(sampleValue(scrape, "multi_heygem_worker_blob_cache_limit_bytes")).toBe(1);
  }, 120_000);
});

describe("the embedded worker", () => {
  it("reads the gateway's blobs: no second copy of any input, and the results come back", async () => {
    const dir = await tempDir();
    cleanups.push(() => removeDir(dir));
    const gateway = await startTestGateway({}, dir);
    cleanups.push(() => gateway.close());

    const audios = [inputs.audio];
    for (const n of [1, 2]) {
      const audio = join(dir, `voice-${n}.m4a`);
      await makeAudio(audio, { seconds: 1 + n / 10 });
      audios.push(audio);
    }
    const ids: string[] = [];
    for (const audio of audios) ids.push(await createTask(gateway.url, audio, inputs.video));
    for (const id of ids) await completedMp4(gateway, id, dir);

    // Three audios and one template, all in the gateway's store and none in the worker's.
    const gatewayBlobs = await blobFiles(join(dir, "blobs"));
    const inputBytes = (await Promise.all([...audios, inputs.video].map((f) => stat(f)))).reduce(
      (sum, s) => sum + s.size,
      0,
    );
    expect(gatewayBlobs.bytes).toBeGreaterThanOrEqual(inputBytes);
    expect(await blobFiles(join(dir, "embedded-worker", "blobs"))).toEqual({ files: 0, bytes: 0 });
  }, 120_000);
});

/**
 * What the gateway asks of a worker to start a task (issue 14: dispatch latency and CPU per task):
 * a real worker behind a recording HTTP proxy: every request it forwards, and every connection the
 * gateway opened to it.
 */
interface Recorder {
  port: number;
  readonly requests: string[];
  /** Requests as they arrive (`→ PUT /v1/jobs/…`) and as their answers end (`← PUT /v1/jobs/…`). */
  readonly timeline: string[];
  connections: number;
  close(): Promise<void>;
}

async function startRecorder(targetPort: number): Promise<Recorder> {
  const requests: string[] = [];
  const timeline: string[] = [];
  const recorder: Recorder = { port: 0, requests, timeline, connections: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const line = `${req.method} ${path}`;
    if (!path.startsWith("/v1/health")) {
      requests.push(line);
      timeline.push(`→ ${line}`);
    }
    const upstream = httpRequest(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (!path.startsWith("/v1/health")) answer.once("end", () => timeline.push(`← ${line}`));
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

/** A gateway whose one machine, `gpu` (one slot), is a real worker behind a recorder. */
async function gatewayBehindRecorder(options: { slow?: boolean } = {}) {
  const dir = await tempDir();
  cleanups.push(() => removeDir(dir));
  const worker = await startFfmpegWorker(join(dir, "worker"), options);
  const recorder = await startRecorder(worker.port);
  cleanups.push(() => recorder.close());
  const machines = join(dir, "machines.json");
  await writeFile(
    machines,
    JSON.stringify({
      machines: [{ name: "gpu", host: "127.0.0.1", port: recorder.port, max_concurrent: 1 }],
    }),
  );
  const gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
  cleanups.push(() => gateway.close());
  await until(() => gateway.fleet.get("gpu")?.state === "up");
  return { dir, recorder, gateway };
}

describe("starting a task on a worker", () => {
  it("sends the task's new audio before its job, asks nothing it knows, and keeps its connections", async () => {
    const { dir, recorder, gateway } = await gatewayBehindRecorder();

    const audios = [inputs.audio];
    for (let i = 0; i < 3; i++) {
      const path = join(dir, `speech-${i}.m4a`);
      // Lengths no other input has: each is new content.
      await makeAudio(path, { seconds: 1.3 + i / 10 });
      audios.push(path);
    }
    for (const audio of audios)
      await completedMp4(gateway, await createTask(gateway.url, audio, inputs.video), dir);
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

  it("has a freed slot's next job accepted before the last job's result is fetched", async () => {
    const { dir, recorder, gateway } = await gatewayBehindRecorder();

    // Queued together on a machine of one slot: each task after the first waits for a slot.
    const ids = await Promise.all([0, 1, 2].map(() => createTask(gateway.url, inputs.audio, inputs.video)));
    for (const id of ids) await completedMp4(gateway, id, dir);
    await until(() => recorder.requests.filter((r) => r.startsWith("DELETE /v1/jobs/")).length === 3);

    // The job ids are the gateway's attempt ids, in the order the worker was given them.
    const jobs = recorder.requests
      .filter((r) => r.startsWith("PUT /v1/jobs/"))
      .map((r) => r.slice("PUT /v1/jobs/".length));
    expect(jobs).toHaveLength(3);
    const at = (line: string) => {
      const i = recorder.timeline.indexOf(line);
      expect(i, line).toBeGreaterThanOrEqual(0);
      return i;
    };
    for (let i = 1; i < jobs.length; i++) {
      // The engine idles from the one's end to the next's acceptance; the result can wait.
      expect(at(`← PUT /v1/jobs/${jobs[i]}`)).toBeLessThan(at(`→ GET /v1/jobs/${jobs[i - 1]}/result`));
    }
  }, 120_000);
});

describe("a task that waits for a busy machine", () => {
  /** A second task's own template and audio, which the machine has never seen. */
  async function otherInputs(dir: string) {
    const video = join(dir, "other-template.mp4");
    await makeVideo(video, { seconds: 1, width: 160, height: 120 });
    const audio = join(dir, "other-speech.m4a");
    await makeAudio(audio, { seconds: 1.4 });
    return { video, audio };
  }

  /**
   * Once both tasks are done: the second one's template and audio were sent ahead, while the
   * first job still ran, so its job was taken at its first request, never refused for a missing
   * input. Each sent once, and not beside the first job's request: only once the worker had
   * answered it.
   */
  async function expectSentAhead(
    { dir, recorder, gateway }: Awaited<ReturnType<typeof gatewayBehindRecorder>>,
    ids: readonly [string, string],
    other: { video: string; audio: string },
  ) {
    for (const id of ids) await completedMp4(gateway, id, dir);
    await until(() => recorder.requests.filter((r) => r.startsWith("DELETE /v1/jobs/")).length === 2);
    const jobs = [...new Set(recorder.requests.filter((r) => r.startsWith("PUT /v1/jobs/")))];
    expect(jobs).toHaveLength(2);
    const [firstJob, secondJob] = jobs as [string, string];
    const at = (line: string) => recorder.timeline.indexOf(line);
    // The long-poll that told the gateway the first job had finished: the last answer about it.
    const firstStatus = `← ${firstJob.replace("PUT", "GET")}`;
    const firstFinished = recorder.timeline.findLastIndex(
      (line) => line === firstStatus || line.startsWith(`${firstStatus}?`),
    );
    for (const input of [other.video, other.audio]) {
      const upload = `PUT /v1/blobs/${await sha256Of(input)}`;
      expect(at(`→ ${upload}`)).toBeGreaterThan(at(`← ${firstJob}`));
      expect(at(`→ ${upload}`)).toBeLessThan(firstFinished);
      expect(recorder.requests.filter((r) => r === upload)).toHaveLength(1);
    }
    expect(recorder.requests.filter((r) => r === secondJob)).toHaveLength(1);
  }

  it("has its inputs sent there while the machine works on the task before it, so its job is taken at once", async () => {
    // The simulate engine's 3 s a second of audio: the first job surely outlasts the sends.
    const setup = await gatewayBehindRecorder({ slow: true });
    const { gateway } = setup;
    const other = await otherInputs(setup.dir);
    // Both queued before the machine takes work: the first starts, the second waits for the slot.
    await gateway.app.inject({ method: "POST", url: "/machines/gpu/drain" });
    const first = await createTask(gateway.url, inputs.audio, inputs.video);
    const second = await createTask(gateway.url, other.audio, other.video);
    await gateway.app.inject({ method: "POST", url: "/machines/gpu/resume" });
    await expectSentAhead(setup, [first, second], other);
  }, 120_000);

  it("has its inputs sent when it arrives at a machine already busy", async () => {
    const setup = await gatewayBehindRecorder({ slow: true });
    const { gateway } = setup;
    const other = await otherInputs(setup.dir);
    // The first job lasts 3 s a second of audio: the second task comes while it runs, to a full fleet.
    const first = await createTask(gateway.url, inputs.audio, inputs.video);
    await until(async () => (await getTask(gateway.url, first)).status === "processing");
    const second = await createTask(gateway.url, other.audio, other.video);
    await expectSentAhead(setup, [first, second], other);
  }, 120_000);
});

async function sha256Of(path: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  const { readFile } = await import("node:fs/promises");
  return createHash("sha256")
    .update(await readFile(path))
    .digest("hex");
}
