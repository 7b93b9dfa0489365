import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import { BlobStore } from "../blobs/blob-store.js";
import type { GatewayConfig } from "../config/gateway-config.js";
import { createEngine } from "../engines/registry.js";
import { frameworkErrors, installErrorHandler } from "../http/error-handler.js";
import type { Logger } from "../logger.js";
import { logMediaTools } from "../media/media-tools-log.js";
import { CallbackStore } from "../store/callback-store.js";
import { lockDataDir } from "../store/data-dir-lock.js";
import { assertStoreNotLost, openSqlite } from "../store/database.js";
import { MachineStore } from "../store/machine-store.js";
import { MediaFactsStore } from "../store/media-facts-store.js";
import { TaskStore } from "../store/task-store.js";
import { VERSION } from "../version.js";
import { startWorker, type WorkerHandle } from "../worker/agent.js";
import { addSharedSchemas, registerDocs } from "./api/docs.js";
import { machineRoutes } from "./api/machine-routes.js";
import { taskRoutes } from "./api/task-routes.js";
import { discardBody } from "./api/upload-deadline.js";
import { CallbackSender } from "./callback-sender.js";
import { type Clock, systemClock } from "./clock.js";
import { DataDirHealth } from "./data-dir-health.js";
import { Dispatcher } from "./dispatcher.js";
import { Fleet } from "./fleet.js";
import { MachinesWatcher } from "./machines-watcher.js";
import { MediaInspector } from "./media-inspector.js";
import { createPlacement } from "./placement/index.js";
import { Prestager } from "./prestage.js";
import { QueueLimit } from "./queue-limit.js";
import { Scheduler } from "./scheduler.js";
import { SpeedModel } from "./speed-model.js";
import { TaskDeadline } from "./task-deadline.js";

export const EMBEDDED_MACHINE = "embedded";
const TASK_URL = /^\/tasks\/([0-9a-f-]{36})(?:[/?]|$)/;

export interface GatewayHandle {
  readonly url: string;
  readonly port: number;
  readonly app: FastifyInstance;
  readonly store: TaskStore;
  readonly fleet: Fleet;
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** Every time read and timer of the gateway and its store (tests pass a fake one). */
  clock?: Clock;
}

/**
 * Starts the whole gateway: store, fleet, scheduler, dispatcher, callbacks and the REST API.
 * With `config.embedded`, a local ffmpeg worker agent runs in this process and joins the fleet
 * through the same /v1 protocol as any remote machine.
 */
export async function startGateway(
  config: GatewayConfig,
  logger: Logger,
  options: GatewayOptions = {},
): Promise<GatewayHandle> {
  await mkdir(config.dataDir, { recursive: true });
  const lock = await lockDataDir(config.dataDir, "gateway");
  try {
    const handle = await startLocked(config, logger, options);
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

async function startLocked(
  config: GatewayConfig,
  logger: Logger,
  options: GatewayOptions,
): Promise<GatewayHandle> {
  const clock = options.clock ?? systemClock;
  // The store stamps rows with the same clock the timers run on, so deadlines and retry times agree.
  const now = () => new Date(clock.now());
  const dbFile = join(config.dataDir, "multi-heygem.db");
  await assertStoreNotLost(dbFile, join(config.dataDir, "blobs"));
  const db = await openSqlite(dbFile);
  const store = new TaskStore(db, now);
  await store.countPending();
  const dataDir = await DataDirHealth.open(config.dataDir, dbFile, config.minFreeDiskBytes);
  const blobs = new BlobStore(join(config.dataDir, "blobs"));
  await blobs.init();

  const machineStore = new MachineStore(db, now);
  const speeds = new SpeedModel();
  for (const sample of await machineStore.recentSpeeds(20))
    speeds.observe(sample.machine, sample.secondsPerAudioSecond);

  let scheduler: Scheduler | undefined;
  let dispatcher: Dispatcher | undefined;
  const wake = () => scheduler?.wake();
  const fleet = new Fleet({
    clock,
    token: config.workerToken,
    healthIntervalMs: config.healthIntervalMs,
    probeTimeoutMs: config.probeTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    failureThreshold: config.failureThreshold,
    graceMs: config.machineGraceMs,
    logger,
    onChange: wake,
    onLost: (machine) =>
      dispatcher?.abandonMachine(
        machine,
        `machine ${machine.name} unreachable for ${config.machineGraceMs} ms`,
      ),
    liveJobs: (machine) => machine.running,
  });
  for (const spec of config.machines) fleet.add(spec);
  const draining = await machineStore.drainingMachines();
  for (const machine of fleet.list()) machine.setDraining(draining.has(machine.name));

  let embedded: WorkerHandle | undefined;
  if (config.embedded) {
    embedded = await startWorker({
      host: "127.0.0.1",
      port: 0,
      dataDir: join(config.dataDir, "embedded-worker"),
      engine: createEngine("ffmpeg", { maxConcurrent: config.embeddedConcurrency, logger }),
      ...(config.workerToken ? { token: config.workerToken } : {}),
      logger: logger.child({ machine: EMBEDDED_MACHINE }),
      version: VERSION,
      logMediaTools: false,
    });
    fleet
      .add(
        {
          name: EMBEDDED_MACHINE,
          host: "127.0.0.1",
          port: embedded.port,
          max_concurrent: config.embeddedConcurrency,
          enabled: true,
        },
        true,
      )
      .setDraining(draining.has(EMBEDDED_MACHINE));
    logger.info(
      { machine: EMBEDDED_MACHINE, url: embedded.url, max_concurrent: config.embeddedConcurrency },
      config.machinesFile
        ? "running an embedded ffmpeg worker beside the configured machines"
        : "no config/machines.json: running an embedded ffmpeg worker (no GPU; fits the video to the audio)",
    );
  }

  dispatcher = new Dispatcher({
    clock,
    store,
    blobs,
    fleet,
    speeds,
    logger,
    maxAttempts: config.maxAttempts,
    maxAudioSeconds: config.maxAudioSeconds,
    pollWaitMs: config.pollWaitMs,
    machineGraceMs: config.machineGraceMs,
    retryDelayMs: Math.min(1000, config.healthIntervalMs),
    onSlotFree: wake,
  });
  const dispatch = dispatcher;
  scheduler = new Scheduler({
    clock,
    store,
    fleet,
    speeds,
    placement: createPlacement(config.placement),
    logger,
    dispatch: (task, machine) => dispatch.dispatch(task, machine),
  });
  const deadline = new TaskDeadline({
    clock,
    store,
    dispatcher,
    timeoutMs: config.taskTimeoutMs,
    checkEveryMs: Math.max(1000, Math.min(60_000, Math.floor(config.taskTimeoutMs / 10))),
    logger,
  });
  const watcher = config.machinesFile
    ? new MachinesWatcher(
        config.machinesFile,
        { machines: [...config.machines] },
        (file) => fleet.apply(file.machines),
        logger,
        { clock },
      )
    : undefined;
  const callbacks = new CallbackSender({
    clock,
    store,
    deliveries: new CallbackStore(db, now),
    logger,
    maxTries: config.callbackMaxTries,
    retryBaseMs: config.callbackRetryBaseMs,
    timeoutMs: config.callbackTimeoutMs,
  });

  // Live attempts claim their slots before anything new is placed: max_concurrent holds across restarts.
  await dispatch.resume(await store.liveAttempts());

  const shutdown = new AbortController();
  const app: FastifyInstance = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    return503OnClosing: true,
    frameworkErrors,
    // Slow clients (issue 9): headers within --header-timeout, the whole request within
    // --upload-timeout; Node checks both every connectionsCheckingInterval. Uploads have their
    // own, finer watch too (upload-deadline.ts), which also catches a client gone idle.
    requestTimeout: config.uploadTimeoutMs,
    http: {
      headersTimeout: config.headerTimeoutMs,
      requestTimeout: config.uploadTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(config.headerTimeoutMs / 4))),
    },
    // Clients poll GET /tasks/{id} every few seconds; a log line per poll would bury the task
    // steps. Changes and failures are logged in onResponse below, reads are not.
    logController: new LogController({ disableRequestLogging: true }),
    // Request log lines about a task carry its task_id too, like every other line about it.
    childLoggerFactory: (parent, bindings, opts, raw) => {
      const taskId = TASK_URL.exec(raw.url ?? "")?.[1];
      return parent.child(taskId ? { ...bindings, task_id: taskId } : bindings, opts);
    },
  });
  installErrorHandler(app);
  // A change the data dir cannot keep is refused before anything runs (503), reads go on.
  const uploadWatch = { clock, idleMs: config.uploadIdleTimeoutMs, totalMs: config.uploadTimeoutMs };
  app.addHook("onRequest", async (request) => {
    if (request.method === "GET" || request.method === "HEAD" || request.method === "OPTIONS") return;
    await dataDir.assertWritable().catch(async (err: unknown) => {
      await discardBody(request.raw, uploadWatch);
      throw err;
    });
  });
  app.addHook("onResponse", async (request, reply) => {
    if ((request.method === "GET" || request.method === "HEAD") && reply.statusCode < 400) return;
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      "request",
    );
  });
  addSharedSchemas(app);
  await app.register(multipart, { limits: { fileSize: config.maxUploadBytes + 1 } });
  await registerDocs(app, VERSION);
  await app.register(taskRoutes, {
    clock,
    store,
    blobs,
    inspector: new MediaInspector(new MediaFactsStore(db, now)),
    maxUploadBytes: config.maxUploadBytes,
    maxAudioSeconds: config.maxAudioSeconds,
    queue: new QueueLimit(store, clock, config.maxPending),
    dataDir,
    upload: uploadWatch,
    syncTimeoutMs: config.syncTimeoutMs,
    onTaskCreated: wake,
    shutdown: shutdown.signal,
    prestage: new Prestager({ clock, fleet, speeds, logger, stallMs: 5000 }),
  });
  await app.register(machineRoutes, {
    fleet,
    machines: machineStore,
    speeds,
    config: watcher?.status,
    onChange: wake,
  });
  app.get("/", { schema: { hide: true } }, async () => ({
    name: "multi-heygem",
    version: VERSION,
    docs: "/docs",
  }));

  await logMediaTools(logger);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const url = `http://${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${port}`;
  logger.info(
    { url, docs: `${url}/docs`, data_dir: config.dataDir, machines: fleet.list().length },
    "gateway listening",
  );

  fleet.start();
  callbacks.start();
  watcher?.start();
  if (config.taskTimeoutMs > 0) deadline.start();
  wake();

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    app,
    store,
    fleet,
    close: () => {
      closing ??= (async () => {
        shutdown.abort();
        scheduler?.close();
        watcher?.close();
        deadline.close();
        await app.close();
        await dispatch.close();
        fleet.close();
        await callbacks.close();
        await embedded?.close();
        await db.destroy();
      })();
      return closing;
    },
  };
}
