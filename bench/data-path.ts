import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { request } from "undici";
import type { JobView } from "../src/protocol/schemas.js";
import { startGateway, startSimWorker } from "./fleet.js";
import { memoryOf, sampleMemory, until } from "./harness.js";
import { allEnded, getJson, HttpError, postTask, postTaskSync, type TaskJson } from "./http.js";
import { type FileFacts, fileFacts } from "./media.js";
import { type BenchContext, type Benchmark, figure, type Measured, type Table } from "./report.js";
import { MB, mb, median, round } from "./stats.js";

/**
 * Issue 5, figure 3: what the gateway costs on the way in and out. One task with a big template
 * and an instant engine, through the gateway (POST /tasks/sync) vs. a client speaking the worker
 * protocol itself; and the gateway's memory while eight clients upload big videos at once.
 */

const CLIENTS = 8;
const AUDIO_SECONDS = 2;

interface DirectTiming {
  totalMs: number;
  uploadMs: number;
  jobMs: number;
  resultMs: number;
  resultBytes: number;
  hashMs: number;
}

interface GatewayTiming {
  totalMs: number;
  /** Client start → task created (upload, hashing, probing, commit). */
  receiveMs: number;
  /** Created → dispatched. */
  queueMs: number;
  /** Dispatched → completed (uploads to the worker, engine, result back to the gateway). */
  workerMs: number;
  /** Completed → the last byte at the client. */
  answerMs: number;
  resultBytes: number;
  peakRssBytes: number;
}

export const dataPath: Benchmark = {
  name: "data-path",
  title: "Data path",
  async run(ctx: BenchContext): Promise<Measured> {
    const videoBytes = (ctx.quick ? 20 : 100) * MB;
    ctx.log(`making a ${mb(videoBytes)} MB video`);
    const video = await fileFacts(await ctx.media.bigVideo(videoBytes));
    const audio = await fileFacts(await ctx.media.audio(AUDIO_SECONDS));

    const runs = ctx.quick ? 2 : 3;
    const direct: DirectTiming[] = [];
    const viaGateway: GatewayTiming[] = [];
    for (let i = 0; i < runs; i++) {
      ctx.log(`run ${i + 1}/${runs}: direct to the worker, then through the gateway`);
      direct.push(await runDirect(ctx, video, audio));
      viaGateway.push(await runGateway(ctx, video, audio));
    }
    const directMs = median(direct.map((d) => d.totalMs));
    const directWithHashMs = median(direct.map((d) => d.totalMs + d.hashMs));
    const gatewayMs = median(viaGateway.map((g) => g.totalMs));

    const rss = await uploadMemory(ctx);

    return {
      figures: [
        figure(
          "data-path.ratio",
          "Data path: gateway ÷ direct, one task",
          round(gatewayMs / directMs, 3),
          "×",
          {
            op: "<=",
            value: 1.1,
          },
        ),
        figure(
          "data-path.ratio-with-hashing",
          "Data path: gateway ÷ direct incl. the client's hashing",
          round(gatewayMs / directWithHashMs, 3),
          "×",
        ),
        figure(
          "data-path.upload-rss",
          `Gateway peak RSS, ${CLIENTS} clients × ${mb(rss.videoBytes)} MB upload`,
          mb(rss.peakBytes),
          "MB",
          { op: "<", value: 200 },
        ),
      ],
      tables: [
        timingTable(direct, viaGateway, video, audio, runs),
        {
          title: `Gateway memory while ${CLIENTS} clients each POST /tasks a ${mb(rss.videoBytes)} MB video at once`,
          columns: [
            "RSS before MB",
            "peak RSS sampled MB",
            "VmHWM MB",
            "samples",
            "uploads s",
            "MB/s in",
            "peak incl. running the tasks MB",
          ],
          rows: [
            [
              mb(rss.baselineBytes),
              mb(rss.peakSampledBytes),
              mb(rss.hwmBytes),
              rss.samples,
              round(rss.seconds, 2),
              round((CLIENTS * rss.videoBytes) / MB / rss.seconds, 0),
              mb(rss.peakWithRunBytes),
            ],
          ],
        },
      ],
      method: [
        `Inputs: a valid ${mb(video.bytes)} MB H.264 MP4 (noisy 1280x720 test pattern at 8 Mbit/s, looped by ` +
          `stream copy) and a ${AUDIO_SECONDS} s AAC audio. Engine: simulate with --time-scale 0 (no wait; it still ` +
          "writes the result with ffmpeg: the template stream-copied to the audio's length).",
        `Direct = the client itself: HEAD/PUT /v1/blobs/{sha256} for the video and the audio, PUT /v1/jobs/{id}, ` +
          "long-poll GET /v1/jobs/{id} until succeeded, GET its result to disk. The SHA-256s are computed beforehand " +
          "and not timed in the main ratio (the strictest comparison: a client that already knows its hashes); the " +
          "second ratio adds the client's hashing time, measured separately.",
        "Gateway = POST /tasks/sync (multipart, streamed from disk with a Content-Length) with the same files, the MP4 " +
          "streamed to disk. The gateway's phases come from the task's created_at / started_at / completed_at.",
        `Every run gets a fresh worker (empty blob cache) and, for the gateway path, a fresh gateway; the two paths ` +
          `alternate, ${runs} runs each (3 in quick mode), medians compared.`,
        `Memory: a gateway child with one instant simulate worker (capacity 1); ${CLIENTS} clients start POST /tasks ` +
          "at once with the same valid video (so all are accepted); /proc/<pid>/status VmRSS sampled every 50 ms " +
          "until the last answer, plus VmHWM (the kernel's peak) then. The figure is the larger. Sampling goes on " +
          "until the 8 tasks have run (video to the worker, results back): the last column.",
        ...(rss.note ? [rss.note] : []),
      ],
      raw: { videoBytes: video.bytes, audioBytes: audio.bytes, direct, viaGateway, rss },
    };
  },
};

function timingTable(
  direct: readonly DirectTiming[],
  viaGateway: readonly GatewayTiming[],
  video: FileFacts,
  audio: FileFacts,
  runs: number,
): Table {
  const med = <T>(xs: readonly T[], f: (x: T) => number) => round(median(xs.map(f)), 0);
  return {
    title: `One task, ${mb(video.bytes)} MB video + ${round(audio.bytes / 1000, 1)} kB audio (medians of ${runs}, ms)`,
    columns: ["path", "total", "phases", "result MB", "runs (total ms)"],
    rows: [
      [
        "direct",
        med(direct, (d) => d.totalMs),
        `upload ${med(direct, (d) => d.uploadMs)} · job ${med(direct, (d) => d.jobMs)} · result ${med(direct, (d) => d.resultMs)} (+ hashing ${med(direct, (d) => d.hashMs)})`,
        mb(direct[0]?.resultBytes ?? 0),
        direct.map((d) => round(d.totalMs, 0)).join(", "),
      ],
      [
        "gateway",
        med(viaGateway, (g) => g.totalMs),
        `receive ${med(viaGateway, (g) => g.receiveMs)} · queue ${med(viaGateway, (g) => g.queueMs)} · worker ${med(viaGateway, (g) => g.workerMs)} · answer ${med(viaGateway, (g) => g.answerMs)} (peak RSS ${mb(Math.max(...viaGateway.map((g) => g.peakRssBytes)))} MB)`,
        mb(viaGateway[0]?.resultBytes ?? 0),
        viaGateway.map((g) => round(g.totalMs, 0)).join(", "),
      ],
    ],
  };
}

async function instantWorker(ctx: BenchContext, dir: string) {
  return startSimWorker(ctx.scope, dir, { name: "gpu-1", capacity: 1, speedFactor: 1, timeScale: 0 });
}

async function runDirect(ctx: BenchContext, video: FileFacts, audio: FileFacts): Promise<DirectTiming> {
  const dir = await ctx.scope.tempDir("mh-bench-direct-");
  const worker = await instantWorker(ctx, dir);
  const base = worker.child.url;
  const out = join(dir, "result.mp4");
  try {
    const hashStart = performance.now();
    await fileFacts(video.path);
    await fileFacts(audio.path);
    const hashMs = performance.now() - hashStart;

    const t0 = performance.now();
    for (const blob of [video, audio]) await ensureBlob(base, blob);
    const t1 = performance.now();
    const id = `bench-${randomUUID()}`;
    let view = await jsonCall<JobView>("PUT", `${base}/v1/jobs/${id}`, {
      audio: { sha256: audio.sha256, bytes: audio.bytes, name: "audio.m4a" },
      video: { sha256: video.sha256, bytes: video.bytes, name: "video.mp4" },
    });
    const deadline = Date.now() + 120_000;
    while (view.status === "queued" || view.status === "running") {
      if (Date.now() > deadline) throw new Error(`direct job ${id} did not finish in 120 s`);
      view = await jsonCall<JobView>(
        "GET",
        `${base}/v1/jobs/${id}?wait_ms=20000&after_version=${view.version}`,
      );
    }
    if (view.status !== "succeeded")
      throw new Error(`direct job ${id} ended ${view.status}: ${view.error?.message}`);
    const t2 = performance.now();
    const res = await request(`${base}/v1/jobs/${id}/result`);
    if (res.statusCode !== 200) throw new HttpError(res.statusCode, await res.body.text(), "GET result");
    await pipeline(res.body, createWriteStream(out));
    const t3 = performance.now();
    return {
      totalMs: t3 - t0,
      uploadMs: t1 - t0,
      jobMs: t2 - t1,
      resultMs: t3 - t2,
      resultBytes: (await stat(out)).size,
      hashMs,
    };
  } finally {
    await worker.child.kill();
  }
}

async function ensureBlob(base: string, blob: FileFacts): Promise<void> {
  const url = `${base}/v1/blobs/${blob.sha256}`;
  const head = await request(url, { method: "HEAD" });
  await head.body.dump();
  if (head.statusCode === 200) return;
  const put = await request(url, {
    method: "PUT",
    body: createReadStream(blob.path),
    headers: { "content-type": "application/octet-stream", "content-length": String(blob.bytes) },
  });
  const text = await put.body.text();
  if (put.statusCode !== 201 && put.statusCode !== 200)
    throw new HttpError(put.statusCode, text, `PUT ${url}`);
}

async function jsonCall<T>(method: "GET" | "PUT", url: string, body?: unknown): Promise<T> {
  const res = await request(url, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new HttpError(res.statusCode, text, `${method} ${url}`);
  return JSON.parse(text) as T;
}

async function runGateway(ctx: BenchContext, video: FileFacts, audio: FileFacts): Promise<GatewayTiming> {
  const dir = await ctx.scope.tempDir("mh-bench-via-gateway-");
  const worker = await instantWorker(ctx, dir);
  const gateway = await startGateway(
    ctx.scope,
    dir,
    [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }],
    ["--health-interval", "200"],
  );
  const out = join(dir, "result.mp4");
  try {
    const memory = sampleMemory(gateway.child.pid);
    const t0 = Date.now();
    const p0 = performance.now();
    const { taskId, bytes } = await postTaskSync(gateway.url, audio.path, video.path, out);
    const totalMs = performance.now() - p0;
    const t1 = t0 + totalMs;
    const { hwmBytes, peakRssBytes } = await memory.stop();
    const task = await getJson<TaskJson>(`${gateway.url}/tasks/${taskId}`);
    const created = Date.parse(task.created_at);
    const started = Date.parse(task.started_at ?? task.created_at);
    const completed = Date.parse(task.completed_at ?? task.created_at);
    return {
      totalMs,
      receiveMs: created - t0,
      queueMs: started - created,
      workerMs: completed - started,
      answerMs: t1 - completed,
      resultBytes: bytes,
      peakRssBytes: Math.max(hwmBytes, peakRssBytes),
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
  }
}

async function uploadMemory(ctx: BenchContext) {
  const wanted = (ctx.quick ? 50 : 500) * MB;
  // The source file, eight staged copies in the gateway, its blob and the worker's, with room to spare.
  const fs = await statfs(tmpdir());
  const free = fs.bavail * fs.bsize;
  const fits = Math.floor(free / (CLIENTS + 5) / MB) * MB;
  const videoBytes = Math.min(wanted, fits);
  const note =
    videoBytes < wanted
      ? `Scaled down: ${mb(free)} MB free in ${tmpdir()} holds ${CLIENTS} uploads of ${mb(videoBytes)} MB, not ${mb(wanted)} MB.`
      : undefined;
  ctx.log(`memory: making a ${mb(videoBytes)} MB video for ${CLIENTS} concurrent uploads`);
  const video = await ctx.media.bigVideo(videoBytes);
  const audio = await ctx.media.audio(AUDIO_SECONDS);
  const dir = await ctx.scope.tempDir("mh-bench-upload-rss-");
  const worker = await instantWorker(ctx, dir);
  const gateway = await startGateway(
    ctx.scope,
    dir,
    [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }],
    [],
    "gateway-rss",
  );
  try {
    const before = await memoryOf(gateway.child.pid);
    const uploads = sampleMemory(gateway.child.pid);
    const whole = sampleMemory(gateway.child.pid);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, () => postTask(gateway.url, audio, video)));
    const seconds = (performance.now() - t0) / 1000;
    const { peakRssBytes, hwmBytes, samples } = await uploads.stop();
    await until("the uploaded tasks to end", () => allEnded(gateway.url, CLIENTS), 300_000, 100);
    const afterwards = await whole.stop();
    return {
      videoBytes: (await stat(video)).size,
      baselineBytes: before?.rssBytes ?? Number.NaN,
      peakSampledBytes: peakRssBytes,
      hwmBytes,
      peakBytes: Math.max(peakRssBytes, hwmBytes),
      /** Including the tasks' run: the video to the worker, the results back. */
      peakWithRunBytes: Math.max(afterwards.peakRssBytes, afterwards.hwmBytes),
      samples,
      seconds,
      note,
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
  }
}
