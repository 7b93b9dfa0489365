import { join } from "node:path";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import { BlobStore } from "../blobs/blob-store.js";
import type { GatewayConfig } from "../config/gateway-config.js";
import { whileLocked } from "../data-dir-lock.js";
import { createEngine } from "../engines/registry.js";
import { createSpeaker } from "../engines/speech/speakers.js";
import { AppError, errorMessage, StartupError } from "../errors.js";
import { frameworkErrors, installErrorHandler } from "../http/error-handler.js";
import { lazyRequestLogger } from "../http/lazy-request-logger.js";
import { RequestsInFlight } from "../http/requests-in-flight.js";
import type { Logger } from "../logger.js";
import { logMediaTools } from "../media/media-tools-log.js";
import { AvatarStore } from "../store/avatar-store.js";
import { blobNeeded } from "../store/blob-references.js";
import { CallbackStore } from "../store/callback-store.js";
import { DispatcherTermStore } from "../store/dispatcher-term-store.js";
import { FleetViewStore } from "../store/fleet-view-store.js";
import { MachineStore } from "../store/machine-store.js";
import { MediaFactsStore } from "../store/media-facts-store.js";
import { RetentionStore } from "../store/retention-store.js";
import { TaskStore } from "../store/task-store.js";
import { VoiceStore } from "../store/voice-store.js";
import { VERSION } from "../version.js";
import { startWorker, type WorkerHandle } from "../worker/agent.js";
import { avatarRoutes } from "./api/avatar-routes.js";
import { callbackRoutes } from "./api/callback-routes.js";
import { allowCorsOrigins } from "./api/cors.js";
import { refuseCrossSiteWrites } from "./api/cross-site.js";
import { dashboardRoutes } from "./api/dashboard-routes.js";
import { addSharedSchemas, registerDocs } from "./api/docs.js";
import { healthRoutes } from "./api/health-routes.js";
import { machineRoutes } from "./api/machine-routes.js";
import { taskAudioRoutes } from "./api/task-audio-routes.js";
import { taskRoutes } from "./api/task-routes.js";
import { taskStreamRoutes } from "./api/task-stream-routes.js";
import { discardBody } from "./api/upload-deadline.js";
import { voiceRoutes } from "./api/voice-routes.js";
import { installAccessControl } from "./auth/access-control.js";
import { ApiKeysWatcher } from "./auth/api-keys-watcher.js";
import { AvatarWarmer } from "./avatar-warmer.js";
import { BlobPush } from "./blob-push.js";
import { AddressPolicy } from "./callbacks/address-policy.js";
import { CallbackSender } from "./callbacks/callback-sender.js";
import { guardedAgent, type Lookup } from "./callbacks/guarded-agent.js";
import { type Clock, systemClock } from "./clock.js";
import { Coordinator, SHARED_NOTICE } from "./coordination/coordinator.js";
import { DispatchDuties } from "./coordination/dispatch-duties.js";
import { FleetView } from "./coordination/fleet-view.js";
import { DataDirHealth } from "./data-dir-health.js";
import { Fleet } from "./fleet.js";
import { refuseUnservable } from "./fleet-abilities.js";
import { gatewayId } from "./gateway-id.js";
import { GatewayMetrics } from "./gateway-metrics.js";
import { MachinesWatcher } from "./machines-watcher.js";
import { MediaInspector } from "./media-inspector.js";
import { openGatewayStore } from "./open-store.js";
import { waitingNote } from "./outage-note.js";
import { createPlacement } from "./placement/index.js";
import { Prestager } from "./prestage.js";
import { QueueLimit } from "./queue-limit.js";
import { checkReadiness } from "./readiness.js";
import { ResultRelay } from "./result-relay.js";
import { RetentionSweeper, sweepInterval } from "./retention-sweeper.js";
import { SpeedModel } from "./speed-model.js";
import { TaskLifecycle } from "./task-lifecycle.js";
import { VoiceMaker } from "./voice-maker.js";

export const EMBEDDED_MACHINE = "embedded";
const NO_MACHINES = "the machines file lists no machines: tasks wait until one is added";
/** Where new tasks come in: refused once the gateway is stopping. */
const NEW_TASK_ROUTES = new Set(["/tasks", "/tasks/sync", "/avatars", "/voices"]);
/** What a refused upload is told to wait: a restart, or a load balancer moving on, takes seconds. */
const RETRY_AFTER_S = 5;
const TASK_URL = /^\/tasks\/([0-9a-f-]{36})(?:[/?]|$)/;

export interface GatewayHandle {
  readonly url: string;
  readonly port: number;
  readonly app: FastifyInstance;
  readonly store: TaskStore;
  readonly fleet: Fleet;
  /**
   * Graceful stop, step one (SIGTERM): refuses new tasks (503 SHUTTING_DOWN with Retry-After) and
   * fails /readyz (`accepting`), answers sync waiters (503 with their task id), places nothing new,
   * and lets the requests in flight (an upload, a result download) and the embedded worker's jobs
   * finish, for at most `graceMs` (`hurry`, a second signal, ends it at once). close() comes next;
   * the attempts under way are kept and re-attached at the next start.
   */
  drain(options: { graceMs: number; hurry?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** Every time read and timer of the gateway and its store (tests pass a fake one). */
  clock?: Clock;
  /** How callback hosts are resolved (tests make a name resolve to a forbidden address). */
  callbackLookup?: Lookup;
  /** Most events an SSE client is replayed on return (tests make it small to see `reset`). */
  streamReplay?: number;
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
  return whileLocked(config.dataDir, "gateway", () => startLocked(config, logger, options));
}

async function startLocked(
  config: GatewayConfig,
  logger: Logger,
  options: GatewayOptions,
): Promise<GatewayHandle> {
  const clock = options.clock ?? systemClock;
  // First: a keys file that cannot be read stops the start before anything else is opened.
  const apiKeys = config.apiKeysFile ? new ApiKeysWatcher(config.apiKeysFile, logger, { clock }) : undefined;
  // The store stamps rows with the same clock the timers run on, so deadlines and retry times agree.
  const now = () => new Date(clock.now());
  const opened = await openGatewayStore(config, logger);
  const db = opened.db;
  const dataDir = await DataDirHealth.open(config.dataDir, opened.watched, config.minFreeDiskBytes);
  // Background writes (the dispatcher's, the deadline's) are held to the same check as the API's.
  const store = new TaskStore(db, now, () => dataDir.assertWritable());
  await store.countPending();
  // Named, for a blob folder shared with other gateways: each clears only its own temp files.
  const blobs = new BlobStore(config.blobsDir, { owner: await gatewayId(config.dataDir) });
  // `--blobs-dir` may name any path (a shared mount that is not there): one line, not a stack.
  await blobs.init().catch((err: unknown) => {
    throw new StartupError(
      `${config.blobsDir}: cannot keep the blobs there (${errorMessage(err)}); check --blobs-dir`,
      { cause: err },
    );
  });

  const voices = new VoiceStore(db, now, () => dataDir.assertWritable());
  const inspector = new MediaInspector(new MediaFactsStore(db, now));
  const machineStore = new MachineStore(db, now);
  const speeds = new SpeedModel();
  for (const sample of await machineStore.recentSpeeds(20))
    speeds.observe(sample.machine, sample.secondsPerAudioSecond);

  // Set below: the fleet's callbacks reach what only the dispatching gateway does (issue 13).
  let duties: DispatchDuties | undefined;
  let coordinator: Coordinator | undefined;
  const wake = () => duties?.wake();
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
      duties?.abandonMachine(machine, `machine ${machine.name} unreachable for ${config.machineGraceMs} ms`),
    // Only a term under way, its live attempts re-attached, knows which jobs are stale.
    liveJobs: (machine) => (duties?.dispatcher ? machine.running : undefined),
  });
  for (const spec of config.machines) fleet.add(spec);
  if (config.machinesFile && config.machines.length === 0 && !config.embedded)
    logger.warn({ file: config.machinesFile }, NO_MACHINES);
  const draining = await machineStore.drainingMachines();
  for (const machine of fleet.list()) machine.setDraining(draining.has(machine.name));

  let embedded: WorkerHandle | undefined;
  if (config.embedded) {
    embedded = await startWorker({
      host: "127.0.0.1",
      port: 0,
      dataDir: join(config.dataDir, "embedded-worker"),
      // It reads the inputs where the gateway keeps them: no second copy, and no upload at all.
      sharedBlobsDir: blobs.root,
      engine: createEngine("ffmpeg", { maxConcurrent: config.embeddedConcurrency, logger }),
      // The offline voice: text tasks work on a fresh machine with no GPU and nothing but npm.
      speaker: createSpeaker({ engine: "ffmpeg", dataDir: join(config.dataDir, "embedded-worker"), logger }),
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
    if (opened.kind === "postgres")
      logger.info(
        { machine: EMBEDDED_MACHINE },
        "the embedded worker is this gateway's own machine: with several gateways on the store, only the one " +
          "that dispatches uses its own; list the machines in a machines file to share them",
      );
  }

  const watcher = config.machinesFile
    ? new MachinesWatcher(
        config.machinesFile,
        { machines: [...config.machines] },
        (file) => fleet.apply(file.machines),
        logger,
        { clock },
      )
    : undefined;
  // The gateway's own ports, refused as callback destinations: known once each server listens.
  const ownPorts: number[] = [];
  if (embedded) ownPorts.push(embedded.port);
  const callbackPolicy = new AddressPolicy({
    allow: config.callbackAllow,
    ownPorts: () => ownPorts,
    machines: () => fleet.list().map((m) => ({ name: m.name, host: m.spec.host, port: m.spec.port })),
  });
  const callbackAgent = guardedAgent(callbackPolicy, { lookup: options.callbackLookup });
  const deliveries = new CallbackStore(db, now);

  // What the embedded worker can do is known before the first request: a voice_id it cannot clone
  // is refused at once (fleet-abilities.ts) rather than left waiting for a probe.
  const embeddedMachine = fleet.get(EMBEDDED_MACHINE);
  if (embedded && embeddedMachine) await fleet.refresh(embeddedMachine);

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
    childLoggerFactory: lazyRequestLogger((url) => {
      const taskId = TASK_URL.exec(url)?.[1];
      return taskId ? { task_id: taskId } : undefined;
    }),
  });
  installErrorHandler(app);
  // Requests in flight, for the drain: each counts until its response has gone (or its client has).
  const requests = new RequestsInFlight(app);
  let accepting = true;
  const uploadWatch = { clock, idleMs: config.uploadIdleTimeoutMs, totalMs: config.uploadTimeoutMs };
  app.addHook("onRequest", async (request, reply) => {
    if (accepting || request.method !== "POST" || !NEW_TASK_ROUTES.has(request.routeOptions.url ?? ""))
      return;
    // Refused before a byte of the body is stored. The rest of it is read and dropped (within the
    // upload deadlines, inside the shutdown grace), as for the other refusals before the body: a
    // connection closed while the client still sends gives it a broken pipe, not this answer.
    await discardBody(request.raw, uploadWatch);
    void reply.header("retry-after", String(RETRY_AFTER_S)).header("connection", "close");
    throw new AppError(
      "SHUTTING_DOWN",
      `the gateway is stopping and takes no new task; send it again in ${RETRY_AFTER_S} s (to this or another gateway)`,
    );
  });
  // In this order: CORS headers go on refusals too, and who is asking is known before what is asked.
  allowCorsOrigins(app, config.corsOrigins);
  installAccessControl(app, { keys: () => apiKeys?.current });
  refuseCrossSiteWrites(app, { allowedOrigins: config.corsOrigins });
  // A change the data dir cannot keep is refused before anything runs (503), reads go on.
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
  const queue = new QueueLimit(store, clock, config.maxPending);
  const metrics = new GatewayMetrics({
    store,
    fleet,
    dispatching: () => coordinator?.dispatching === true,
    heldBytes: () => blobs.heldBytes,
  });
  const sweeper = new RetentionSweeper({
    clock,
    store: new RetentionStore(db, store, now, () => dataDir.assertWritable()),
    blobs,
    needed: (sha256) => blobNeeded(db, sha256),
    logger,
    counters: metrics,
    retentionMs: config.retentionMs,
    retentionRowsMs: config.retentionRowsMs,
    everyMs: sweepInterval(config.retentionMs, config.retentionRowsMs),
  });
  const avatars = new AvatarStore(db, now, () => dataDir.assertWritable());
  const push = new BlobPush({
    clock,
    blobs,
    askTimeoutMs: Math.min(config.requestTimeoutMs, 10_000),
    // The link is free again: a big input may go ahead to a busy machine (input-prefetch.ts).
    onIdle: wake,
  });
  const warmer = new AvatarWarmer({ clock, fleet, push, logger });
  // From the dispatcher to a POST /tasks/sync of this process: the result as it comes home.
  const relay = new ResultRelay();
  await app.register(taskRoutes, {
    clock,
    store,
    relay,
    avatars,
    blobs,
    inspector,
    maxUploadBytes: config.maxUploadBytes,
    maxAudioSeconds: config.maxAudioSeconds,
    queue,
    dataDir,
    upload: uploadWatch,
    syncTimeoutMs: config.syncTimeoutMs,
    onTaskCreated: wake,
    lifecycle: new TaskLifecycle({ store, blobs, queue, logger, onQueued: wake }),
    voices,
    refuseUnservable: (need) => refuseUnservable(fleet, need),
    waitingNote: (need) => waitingNote(fleet, need),
    shutdown: shutdown.signal,
    prestage: new Prestager({ clock, fleet, speeds, logger, stallMs: 5000 }),
    callbackPolicy,
    deleteTask: (taskId) => sweeper.deleteTask(taskId),
  });
  await app.register(taskAudioRoutes, { store, blobs });
  await app.register(avatarRoutes, {
    avatars,
    blobs,
    inspector,
    maxUploadBytes: config.maxUploadBytes,
    dataDir,
    upload: uploadWatch,
    warmer,
    releaseBlobs: (shas) => sweeper.releaseBlobs(shas),
  });
  await app.register(voiceRoutes, {
    voices,
    avatars,
    blobs,
    inspector,
    maker: new VoiceMaker({ fleet }),
    maxUploadBytes: config.maxUploadBytes,
    dataDir,
    upload: uploadWatch,
    shutdown: shutdown.signal,
    releaseBlobs: (shas) => sweeper.releaseBlobs(shas),
  });
  await app.register(taskStreamRoutes, {
    clock,
    store,
    shutdown: shutdown.signal,
    ...(options.streamReplay === undefined ? {} : { maxReplay: options.streamReplay }),
  });
  for (const metric of embedded?.metrics ?? []) metrics.registry.registerMetric(metric);
  await app.register(healthRoutes, {
    registry: metrics.registry,
    readiness: () =>
      checkReadiness({
        db,
        clock,
        fleet,
        dataDir: config.dataDir,
        embedded: embedded !== undefined,
        minFreeDiskBytes: config.minFreeDiskBytes,
        accepting,
      }),
  });
  const announce = (kind: (typeof SHARED_NOTICE)[keyof typeof SHARED_NOTICE]) =>
    void coordinator
      ?.announce(kind)
      .catch((err: unknown) => logger.warn({ err }, "telling the other gateways of a change failed"));
  await app.register(callbackRoutes, {
    store,
    deliveries,
    onDelivery: () => {
      duties?.kickCallbacks();
      announce(SHARED_NOTICE.callbacks);
    },
  });
  const fleetView = new FleetView({
    clock,
    fleet,
    speeds,
    views: new FleetViewStore(db),
    logger,
    dispatching: () => opened.kind === "sqlite" || coordinator?.dispatching === true,
    gateway: `${config.host}:${config.port}`,
  });
  await app.register(machineRoutes, {
    fleet,
    machines: machineStore,
    speeds,
    config: watcher?.status,
    shown: () => fleetView.machines(),
    onChange: () => {
      wake();
      announce(SHARED_NOTICE.machines);
    },
  });
  await app.register(dashboardRoutes, { version: VERSION });

  await logMediaTools(logger);
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const url = `http://${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${port}`;
  ownPorts.push(port);
  const publicUrl = config.publicUrl ?? url;
  const dispatchDuties = new DispatchDuties({
    clock,
    store,
    fleet,
    speeds,
    machineStore,
    logger,
    placement: createPlacement(config.placement),
    push,
    dispatcher: {
      blobs,
      relay,
      voices,
      inspector,
      maxAttempts: config.maxAttempts,
      maxAudioSeconds: config.maxAudioSeconds,
      pollWaitMs: config.pollWaitMs,
      machineGraceMs: config.machineGraceMs,
      retryDelayMs: Math.min(1000, config.healthIntervalMs),
    },
    taskTimeoutMs: config.taskTimeoutMs,
    sweeper,
    callbacks: () =>
      new CallbackSender({
        clock,
        store,
        deliveries,
        logger,
        dispatcher: callbackAgent,
        maxTries: config.callbackMaxTries,
        retryFirstDelayMs: config.callbackRetryBaseMs,
        timeoutMs: config.callbackTimeoutMs,
        signingKey: config.callbackSigningKey,
        publicUrl,
        onTryFailed: metrics.callbackTryFailed,
      }),
    fleetView: opened.kind === "postgres" ? fleetView : undefined,
  });
  duties = dispatchDuties;
  const coordination = new Coordinator({
    url: opened.kind === "postgres" ? config.storeUrl : undefined,
    store,
    terms: new DispatcherTermStore(db, now),
    duties: dispatchDuties,
    logger,
    onNotice: (kind) => {
      if (kind === SHARED_NOTICE.callbacks) dispatchDuties.kickCallbacks();
      else
        void dispatchDuties
          .applyMachineFlags()
          .catch((err: unknown) => logger.warn({ err }, "reading the machines' flags failed"));
    },
  });
  coordinator = coordination;
  logger.info(
    {
      url,
      docs: `${url}/docs`,
      data_dir: config.dataDir,
      machines_file: config.machinesFile ?? null,
      machines: fleet.list().map((m) => m.name),
      embedded_worker: embedded !== undefined,
    },
    "gateway listening",
  );
  if (apiKeys) {
    logger.info(
      { file: apiKeys.file, keys: apiKeys.current.size },
      "API keys required (Authorization: Bearer <key>)",
    );
  } else {
    logger.warn(
      { url },
      "the API is OPEN: no --api-keys, so anyone who can reach this port can create tasks and read every task " +
        "and result; machine administration answers only to clients on this machine. Configure --api-keys " +
        "before exposing it to a network",
    );
  }
  if (config.callbackSigningKey) {
    logger.info({ public_url: publicUrl }, "callbacks are signed (Standard Webhooks, --callback-secret)");
  } else {
    logger.warn(
      { public_url: publicUrl },
      "callbacks are NOT signed: receivers cannot tell them from forgeries; set --callback-secret whsec_…",
    );
  }

  fleet.start();
  metrics.start();
  watcher?.start();
  apiKeys?.start();
  // Dispatches at once (SQLite), or takes part in the election among the gateways on the store.
  await coordination.start();

  let closing: Promise<void> | undefined;
  let drained: Promise<void> | undefined;
  /** The drain's grace ran out with requests still in flight: close() cuts their connections. */
  let cutOff = false;
  const drain = async ({ graceMs, hurry }: { graceMs: number; hurry?: AbortSignal }) => {
    accepting = false;
    // The embedded agent drains too: that is the gateway stopping, not an outage to note on tasks.
    await dispatchDuties.stopPlacing();
    // Sync waiters answer now (503 with their task id): the grace is for transfers, not renders.
    shutdown.abort();
    logger.info(
      { requests_in_flight: requests.size, grace_ms: graceMs, embedded_worker: embedded !== undefined },
      "draining: no new tasks; requests in flight may finish within the grace",
    );
    const grace = AbortSignal.timeout(graceMs);
    const until = hurry ? AbortSignal.any([grace, hurry]) : grace;
    await Promise.all([requests.whenNone(until), embedded?.drain({ graceMs, ...(hurry ? { hurry } : {}) })]);
    cutOff = requests.size > 0;
    if (cutOff)
      logger.warn({ requests_in_flight: requests.size }, "grace over: cutting the requests still in flight");
    else logger.info("drained: no request in flight");
  };
  return {
    url,
    port,
    app,
    store,
    fleet,
    drain: (options) => {
      drained ??= drain(options);
      return drained;
    },
    close: () => {
      closing ??= (async () => {
        accepting = false;
        shutdown.abort();
        metrics.close();
        watcher?.close();
        apiKeys?.close();
        await dispatchDuties.stopPlacing();
        relay.close();
        // After a drain that ran out of grace, what is still in flight is cut at once.
        await requests.close(cutOff ? AbortSignal.abort() : undefined);
        // Sends ahead (avatar warms, template prefetches) stop: a task sends what it needs itself.
        await push.close();
        // Ends this gateway's term (if it dispatches) before its session, which holds the lock.
        await coordination.close();
        fleet.close();
        await callbackAgent.close();
        await embedded?.close();
        await opened.close();
      })();
      return closing;
    },
  };
}
