import { createHash, timingSafeEqual } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { isIPv6 } from "node:net";
import fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import { BlobStore } from "../blobs/blob-store.js";
import type { Engine } from "../engines/engine.js";
import { AppError } from "../errors.js";
import { frameworkErrors, installErrorHandler } from "../http/error-handler.js";
import type { Logger } from "../logger.js";
import { logMediaTools } from "../media/media-tools-log.js";
import { bearer, TOKEN_HEADER } from "../protocol/schemas.js";
import { lockDataDir } from "../store/data-dir-lock.js";
import { JobJournal } from "./job-journal.js";
import { JobRecords } from "./job-records.js";
import { JobRunner } from "./job-runner.js";
import { workerLayout } from "./layout.js";
import { registerWorkerRoutes } from "./routes.js";

export interface WorkerOptions {
  host: string;
  /** 0 picks a free port; the handle tells which. */
  port: number;
  dataDir: string;
  /** Owned by the caller, who closes it after the worker. */
  engine: Engine;
  /** When set, every call must carry `authorization: Bearer <token>`. */
  token?: string;
  logger: Logger;
  /** multi-heygem version reported by /v1/health. */
  version?: string;
  /** How long finished jobs and their results are kept (default 24 h). */
  resultRetentionMs?: number;
  /** Log which ffmpeg and ffprobe run (default true; the gateway's embedded worker leaves it to the gateway). */
  logMediaTools?: boolean;
}

export interface WorkerHandle {
  /** `http://host:port`, ready for the gateway's machines.json. */
  readonly url: string;
  readonly port: number;
  /**
   * Stops taking requests, ends long-polls, aborts running jobs (recorded as failed, kind
   * `machine`, so the gateway runs them elsewhere) and closes the server. Queued jobs stay
   * queued for the next start on the same data dir, and so do running jobs whose engine can
   * `resume` them (a HeyGem container renders on while the agent restarts).
   */
  close(): Promise<void>;
}

/** Starts the worker agent: the /v1 protocol server in front of one engine on this machine. */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  await mkdir(options.dataDir, { recursive: true });
  const lock = await lockDataDir(options.dataDir, "worker");
  try {
    const handle = await startLocked(options);
    return {
      ...handle,
      close: async () => {
        await handle.close();
        await lock.release();
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

async function startLocked(options: WorkerOptions): Promise<WorkerHandle> {
  const logger = options.logger.child({ component: "worker", engine: options.engine.name });
  const layout = workerLayout(options.dataDir);
  const blobs = new BlobStore(layout.blobs);
  await blobs.init();
  const journal = new JobJournal(layout.dataDir);
  await journal.open();
  const runner = await JobRunner.start({
    engine: options.engine,
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
    frameworkErrors,
  });
  installErrorHandler(app);
  if (options.token !== undefined) requireToken(app, options.token);
  await registerWorkerRoutes(app, {
    engine: options.engine,
    blobs,
    runner,
    dataDir: layout.dataDir,
    version: options.version ?? "unknown",
  });

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
  logger.info({ url, capacity: options.engine.capacity, data_dir: layout.dataDir }, "worker agent listening");

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () => {
      closing ??= (async () => {
        // Stop listening first, then settle the jobs, so that no new job arrives mid-shutdown and
        // the long-polls and DELETEs that app.close() waits for can end.
        const serverClosed = app.close();
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
  app.addHook("onRequest", async (request) => {
    const given = request.headers[TOKEN_HEADER];
    if (typeof given !== "string" || !timingSafeEqual(digest(given), expected)) {
      throw new AppError("UNAUTHORIZED", 401, "this worker needs its token: authorization: Bearer <token>");
    }
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
