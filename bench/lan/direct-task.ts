import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import type { JobView } from "../../src/protocol/schemas.js";
import { WorkerClient } from "../../src/protocol/worker-client.js";
import type { FileFacts } from "../media.js";

/**
 * One task without the gateway: the client speaks the worker protocol itself, with the worker
 * client the gateway uses (so both paths share one HTTP stack): HEAD/PUT each blob, PUT the job,
 * long-poll it to its end, GET the result to `out`. The hashes are known beforehand.
 */
export interface DirectTiming {
  readonly totalMs: number;
  readonly uploadMs: number;
  readonly jobMs: number;
  readonly resultMs: number;
  readonly resultBytes: number;
}

export async function runDirectTask(
  workerUrl: string,
  token: string,
  video: FileFacts,
  audio: FileFacts,
  out: string,
): Promise<DirectTiming> {
  const client = new WorkerClient({ baseUrl: workerUrl, token, requestTimeoutMs: 30_000 });
  const t0 = performance.now();
  for (const blob of [video, audio]) {
    if (!(await client.hasBlob(blob.sha256))) await client.putBlob(blob.sha256, blob.path, blob.bytes);
  }
  const t1 = performance.now();
  const id = `bench-${randomUUID()}`;
  let view: JobView | undefined = await client.putJob(id, {
    audio: { sha256: audio.sha256, bytes: audio.bytes, name: basename(audio.path) },
    video: { sha256: video.sha256, bytes: video.bytes, name: basename(video.path) },
  });
  const deadline = Date.now() + 300_000;
  while (view && (view.status === "queued" || view.status === "running")) {
    if (Date.now() > deadline) throw new Error(`direct job ${id} did not finish in 300 s`);
    view = await client.getJob(id, { waitMs: 20_000, afterVersion: view.version });
  }
  if (view?.status !== "succeeded") {
    throw new Error(`direct job ${id} ended ${view?.status ?? "unknown"}: ${view?.error?.message}`);
  }
  const t2 = performance.now();
  await pipeline(await client.result(id), createWriteStream(out));
  const t3 = performance.now();
  return {
    totalMs: t3 - t0,
    uploadMs: t1 - t0,
    jobMs: t2 - t1,
    resultMs: t3 - t2,
    resultBytes: (await stat(out)).size,
  };
}
