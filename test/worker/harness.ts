import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pino } from "pino";
import { BlobStore } from "../../src/blobs/blob-store.js";
import type { Logger } from "../../src/logger.js";
import { bearer, type JobView, type PutJobBody } from "../../src/protocol/schemas.js";
import { startWorker, type WorkerHandle, type WorkerOptions } from "../../src/worker/agent.js";
import { BlobCache } from "../../src/worker/blob-cache.js";
import { workerLayout } from "../../src/worker/layout.js";
import { GateEngine } from "../helpers/gate-engine.js";

export const silentLogger: Logger = pino({ level: "silent" });

/**
 * A worker's layout in `dir`, and its input cache holding one small blob, for a JobRunner of a
 * test's own; `Cache` is BlobCache or a subclass that holds one of its steps back.
 */
export async function cacheWithOneBlob(dir: string, Cache: typeof BlobCache = BlobCache) {
  const layout = workerLayout(dir);
  const store = new BlobStore(layout.blobs);
  const blobs = new Cache({
    store,
    maxBytes: 0,
    pinned: () => new Set(),
    now: Date.now,
    logger: silentLogger,
  });
  await blobs.init();
  const blob = await store.put(Readable.from([Buffer.from("media")]));
  await blobs.init();
  return { layout, blobs, blob };
}

export function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface TestWorker {
  readonly handle: WorkerHandle;
  readonly engine: GateEngine;
  readonly dataDir: string;
  /** fetch against the worker, with its token when it has one. */
  call(path: string, init?: RequestInit): Promise<Response>;
  uploadBlob(content: Buffer | string): Promise<{ sha256: string; bytes: number }>;
  putJob(id: string, body: PutJobBody): Promise<Response>;
  job(id: string): Promise<JobView>;
}

/**
 * Starts workers on loopback ports with a GateEngine, each in its own temp dir, and stops them
 * all in `cleanup()` (call it from afterEach).
 */
export function workerHarness() {
  const cleanups: (() => Promise<void>)[] = [];

  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "mh-worker-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async function start(
    options: Partial<Omit<WorkerOptions, "engine">> & { engine?: GateEngine } = {},
  ): Promise<TestWorker> {
    const engine = options.engine ?? new GateEngine(1);
    const dataDir = options.dataDir ?? (await tempDir());
    const handle = await startWorker({
      host: "127.0.0.1",
      port: 0,
      logger: silentLogger,
      ...options,
      engine,
      dataDir,
    });
    cleanups.push(() => handle.close());
    const token = options.token;
    const call = (path: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      if (token !== undefined && !headers.has("authorization")) headers.set("authorization", bearer(token));
      return fetch(`${handle.url}${path}`, { ...init, headers });
    };
    return {
      handle,
      engine,
      dataDir,
      call,
      async uploadBlob(content) {
        const body = Buffer.from(content);
        const hash = sha256(body);
        const res = await call(`/v1/blobs/${hash}`, {
          method: "PUT",
          body,
          headers: { "content-type": "application/octet-stream" },
        });
        if (res.status !== 201 && res.status !== 200)
          throw new Error(`upload: ${res.status} ${await res.text()}`);
        return { sha256: hash, bytes: body.length };
      },
      putJob(id, body) {
        return call(`/v1/jobs/${id}`, {
          method: "PUT",
          body: JSON.stringify(body),
          headers: { "content-type": "application/json" },
        });
      },
      async job(id) {
        const res = await call(`/v1/jobs/${id}`);
        if (res.status !== 200) throw new Error(`GET job ${id}: ${res.status} ${await res.text()}`);
        return (await res.json()) as JobView;
      },
    };
  }

  /** Uploads a distinct audio and video and returns a job body for them. */
  async function inputs(worker: TestWorker, tag = "x"): Promise<PutJobBody> {
    const audio = await worker.uploadBlob(`audio ${tag}`);
    const video = await worker.uploadBlob(`video ${tag}`);
    return { audio: { ...audio, name: "voice.MP3" }, video };
  }

  async function cleanup(): Promise<void> {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  }

  return { start, tempDir, inputs, cleanup };
}
