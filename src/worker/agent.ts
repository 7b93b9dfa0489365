import { createHash, timingSafeEqual } from "node:crypto";
import { statfs as fsStatfs } from "node:fs/promises";
import { isIPv6 } from "node:net";
import fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Metric } from "prom-client";
import { BlobStore } from "../blobs/blob-store.js";
import { whileLocked } from "../data-dir-lock.js";
import type { Engine } from "../engines/engine.js";
import type { Speaker } from "../engines/speech/speaker.js";
import { AppError } from "../errors.js";
import { frameworkErrors, installErrorHandler } from "../http/error-handler.js";
import { lazyRequestLogger } from "../http/lazy-request-logger.js";
import { isLoopbackHost } from "../http/loopback.js";
import { RequestsInFlight } from "../http/requests-in-flight.js";
import type { Logger } from "../logger.js";
import { makeDir } from "../make-dir.js";
import { logMediaTools } from "../media/media-tools-log.js";
import { bearer, TOKEN_HEADER } from "../protocol/schemas.js";
import { BlobCache, defaultCacheMaxBytes, type StatFs } from "./blob-cache.js";
import { JobJournal } from "./job-journal.js";
import { JobRecords } from "./job-records.js";
import { JobRunner } from "./job-runner.js";
import { workerLayout } from "./layout.js";
import { PUBLIC_PATHS, registerOpsRoutes } from "./ops-routes.js";
import { registerWorkerRoutes } from "./routes.js";
import { registerVoiceRoutes } from "./voice-routes.js";
import { WorkerMetrics } from "./worker-metrics.js";

export interface WorkerOptions {
  host: string;
  /** 0 picks a free port; the handle tells which. */
  port: number;
  dataDir: string;
  /** Owned by the caller, who closes it after the worker. */
  engine: Engine;
  /**
   * Speaks text jobs before the engine lip-syncs them (issue 12); owned by the caller like the
   * engine. Absent: /v1/health says capabilities.tts false and text jobs are refused.
   */
  speaker?: Speaker | undefined;
  /** When set, every call must carry `authorization: Bearer <token>`. */
  token?: string;
  logger: Logger;
  /** multi-heygem version reported by /v1/health. */
  version?: string;
  /** How long finished jobs and their results are kept (default 24 h). */
  resultRetentionMs?: number;
  /** Log which ffmpeg and ffprobe run (default true; the gateway's embedded worker leaves it to the gateway). */
  logMediaTools?: boolean;
  /**
   * Soft limit on the uploaded inputs kept (`--cache-max-gb`), least recently used going first;
   * 0: none. Default: a quarter of the file system under the data dir.
   */
  cacheMaxBytes?: number;
  /**
   * A blob folder of another process in the same layout (blob-store.ts), read before asking for
   * an upload and never written or deleted: the gateway's, for its embedded worker, which then
   * keeps no second copy of the inputs. It must be on the data dir's file system for inputs to
   * be hard-linked; elsewhere they are copied into each job's work dir.
   */
  sharedBlobsDir?: string;
  /** The disk's figures (free space, size); tests pass their own. */
  statfs?: StatFs;
}

export interface WorkerHandle {
  /** `http://host:port`, ready for the gateway's machines.json. */
  readonly url: string;
  readonly port: number;
  /** Its own Prometheus metrics (not the process ones), for a gateway that embeds it to export. */
  readonly metrics: readonly Metric[];
  /**
   * Graceful stop, step one (SIGTERM): takes no new job (`draining` in /v1/health, a new job is
   * refused with 503 WORKER_DRAINING) while it goes on answering polls and results, and resolves
   * once the gateway has collected every job the agent held, or at `graceMs`. Jobs still running
   * then are stopped (see close()), and the gateway gets a few seconds to learn of it. `hurry`
   * (a second signal) ends the grace at once. close() comes next.
   */
  drain(options: { graceMs: number; hurry?: AbortSignal }): Promise<void>;
  /**
   * Stops taking requests, ends long-polls, aborts running jobs (recorded as failed, kind
   * `machine`, so the gateway runs them elsewhere) and closes the server. Queued jobs stay
   * queued for the next start on the same data dir, and so do running jobs whose engine can
   * `resume` them (a HeyGem container renders on while the agent restarts).
   */
  close(): Promise<void>;
}

/** After a drain's grace: how long the gateway may take to collect the jobs stopped at its end. */
const FAREWELL_MS = 5_000;

/** Starts the worker agent: the /v1 protocol server in front of one engine on this machine. */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  return whileLocked(options.dataDir, "worker", () => startLocked(options));
}

async function startLocked(options: WorkerOptions): Promise<WorkerHandle> {
  const logger = options.logger.child({ component: "worker", engine: options.engine.name });
  const layout = workerLayout(options.dataDir);
  const statfs = options.statfs ?? fsStatfs;
  await makeDir(layout.dataDir);
  const cacheMaxBytes = options.cacheMaxBytes ?? (await defaultCacheMaxBytes(layout.dataDir, statfs));
  const blobs: BlobCache = new BlobCache({
    store: new BlobStore(layout.blobs),
    ...(options.sharedBlobsDir === undefined ? {} : { shared: new BlobStore(options.sharedBlobsDir) }),
    maxBytes: cacheMaxBytes,
    pinned: () => runner.neededBlobs(),
    now: Date.now,
    logger,
    onEvicted: (count) => metrics.blobsEvicted(count),
  });
  await blobs.init();
  const journal = new JobJournal(layout.dataDir);
  await journal.open();
  const metrics = new WorkerMetrics({
    engine: options.engine,
    running: () => runner.runningIds.length,
    queued: () => runner.queuedIds.length,
    cache: blobs,
  });
  const runner: JobRunner = await JobRunner.start({
    onFinished: (view) => {
      metrics.jobFinished(view);
      // What the job needed may go now that it no longer pins it.
      void blobs.evict();
    },
    engine: options.engine,
    speaker: options.speaker,
    blobs,
    journal,
    records: new JobRecords(layout.jobs, logger),
    layout,
    logger,
    ...(options.resultRetentionMs === undefined ? {} : { resultRetentionMs: options.resultRetentionMs }),
  });

  // Health probes and long-polls would drown the log; job events and errors are logged instead.
  // Widened so the app is a plain FastifyInstance, which the shared http helpers take.
  const appLogger: FastifyBaseLogger = logger;
  const app = fastify({
    loggerInstance: appLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyRequestLogger(),
    frameworkErrors,
  });
  installErrorHandler(app);
  const requests = new RequestsInFlight(app);
  if (options.token !== undefined) requireToken(app, options.token);
  else if (isLoopbackHost(options.host)) requireLoopbackHost(app);
  await registerWorkerRoutes(app, {
    engine: options.engine,
    speaker: options.speaker,
    blobs,
    runner,
    statfs,
    dataDir: layout.dataDir,
    version: options.version ?? "unknown",
  });
  registerVoiceRoutes(app, {
    speaker: options.speaker,
    blobs,
    layout,
    draining: () => runner.isDraining,
  });
  // A limit lowered since the last start applies at once, around what the recovered jobs need.
  await blobs.evict();
  registerOpsRoutes(app, metrics.registry);

  if (options.logMediaTools !== false) await logMediaTools(logger);
  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (err) {
    await runner.close();
    await app.close();
    await journal.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  const url = `http://${isIPv6(options.host) ? `[${options.host}]` : options.host}:${port}`;
  logger.info(
    {
      url,
      capacity: options.engine.capacity,
      data_dir: layout.dataDir,
      cache_max_bytes: cacheMaxBytes,
      cache_bytes: blobs.bytes,
      ...(options.sharedBlobsDir === undefined ? {} : { shared_blobs: true }),
    },
    "worker agent listening",
  );

  let closing: Promise<void> | undefined;
  let draining: Promise<void> | undefined;
  const drain = async ({ graceMs, hurry }: { graceMs: number; hurry?: AbortSignal }) => {
    logger.info(
      { running: runner.runningIds.length, queued: runner.queuedIds.length, grace_ms: graceMs },
      "draining: no new jobs; running jobs may finish within the grace",
    );
    runner.drain();
    const grace = AbortSignal.timeout(graceMs);
    await runner.whenCollected(hurry ? AbortSignal.any([grace, hurry]) : grace);
    const left = runner.uncollected;
    if (left === 0) return logger.info("drained: every job finished and was collected");
    logger.warn(
      { jobs: left, hurried: hurry?.aborted === true },
      "grace over: stopping the jobs still running (HeyGem jobs are found again after a restart)",
    );
    await runner.stopJobs();
    // The failures just recorded reach the gateway through its polls; wait a little for them.
    const farewell = AbortSignal.timeout(FAREWELL_MS);
    await runner.whenCollected(hurry ? AbortSignal.any([farewell, hurry]) : farewell);
  };
  return {
    url,
    port,
    metrics: metrics.own,
    drain: (options) => {
      draining ??= drain(options);
      return draining;
    },
    close: () => {
      closing ??= (async () => {
        // Stop listening first, then settle the jobs, so that no new job arrives mid-shutdown and
        // the long-polls and DELETEs that app.close() waits for can end.
        const serverClosed = requests.close();
        await runner.close();
        await serverClosed;
        await journal.close();
        logger.info("worker agent stopped");
      })();
      return closing;
    },
  };
}

function requireToken(app: FastifyInstance, token: string): void {
  // Compared as digests so that neither the content nor the length leaks through timing.
  const expected = digest(bearer(token));
  app.addHook("onRequest", async (request, reply) => {
    if (PUBLIC_PATHS.has(request.routeOptions.url ?? "")) return;
    const given = request.headers[TOKEN_HEADER];
    if (typeof given === "string" && timingSafeEqual(digest(given), expected)) return;
    // Told apart so that an operator sees at once whether the gateway sends no token or another one.
    void reply.header("www-authenticate", 'Bearer realm="multi-heygem-worker"');
    if (typeof given !== "string" || !/^Bearer +\S/i.test(given)) {
      throw new AppError("UNAUTHORIZED", "this worker needs its token: send Authorization: Bearer <token>");
    }
    throw new AppError(
      "TOKEN_MISMATCH",
      "the worker token does not match (the gateway's --worker-token or worker_token must equal this worker's --token)",
    );
  });
}

/**
 * A worker without a token is allowed on loopback only (issue 9), but a web page whose name is
 * rebound to 127.0.0.1 reaches loopback from a browser on this machine; its Host header still
 * names it (DNS rebinding), so such a worker answers only requests addressed to loopback.
 */
function requireLoopbackHost(app: FastifyInstance): void {
  app.addHook("onRequest", async (request) => {
    let host = "";
    try {
      host = new URL(`http://${request.headers.host ?? ""}`).hostname;
    } catch {
      host = "";
    }
    if (!isLoopbackHost(host)) {
      throw new AppError(
        "FORBIDDEN",
        "this worker has no token, so it answers only requests addressed to 127.0.0.1, localhost or [::1]; " +
          "give it a --token to reach it by another name",
      );
    }
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
