#!/usr/bin/env node
import { Command, Option } from "commander";
import { type GatewayFlags, resolveGatewayConfig } from "./config/gateway-config.js";
import { collectHeygemFlag } from "./config/heygem-config.js";
import { resolveWorkerConfig, type WorkerFlags } from "./config/worker-config.js";
import { createEngine, engineNames } from "./engines/registry.js";
import { ConfigError, StartupError } from "./errors.js";
import { createLogger, type Logger } from "./logger.js";
import { VERSION } from "./version.js";

const ENV = "MULTI_HEYGEM_";
const SHUTDOWN_GRACE_MS = 15_000;

const opt = (flags: string, description: string, env: string) =>
  new Option(flags, description).env(`${ENV}${env}`);

const program = new Command()
  .name("multi-heygem")
  .description("Lip-sync video synthesis on a fleet of GPU machines")
  .version(VERSION);

program
  .command("gateway", { isDefault: false })
  .description("REST API, queue and dispatcher (what `npm start` runs)")
  .addOption(opt("--host <host>", "address to listen on (default 0.0.0.0)", "HOST"))
  .addOption(opt("--port <port>", "port to listen on (default 8101)", "PORT"))
  .addOption(opt("--config <file>", "machines file (default config/machines.json when it exists)", "CONFIG"))
  .addOption(opt("--data-dir <dir>", "store, uploads and results (default ./data)", "DATA_DIR"))
  .addOption(
    opt(
      "--embedded",
      "also run a local ffmpeg worker inside the gateway (implied without a machines file)",
      "EMBEDDED",
    ),
  )
  .addOption(
    opt(
      "--embedded-concurrency <n>",
      "jobs the embedded worker runs at once (default 1)",
      "EMBEDDED_CONCURRENCY",
    ),
  )
  .addOption(
    opt("--health-interval <ms>", "how often each machine is probed (default 1000)", "HEALTH_INTERVAL"),
  )
  .addOption(
    opt("--probe-timeout <ms>", "a health probe slower than this fails (default 2000)", "PROBE_TIMEOUT"),
  )
  .addOption(
    opt(
      "--failure-threshold <n>",
      "failed probes in a row that take a machine out (default 2)",
      "FAILURE_THRESHOLD",
    ),
  )
  .addOption(
    opt(
      "--placement <policy>",
      "earliest-finish, least-loaded or round-robin (default earliest-finish)",
      "PLACEMENT",
    ),
  )
  .addOption(
    opt(
      "--task-timeout <ms>",
      "fail tasks not finished this long after creation; 0 = never (default 6 h)",
      "TASK_TIMEOUT",
    ),
  )
  .addOption(opt("--poll-wait <ms>", "long-poll wait when following a job (default 20000)", "POLL_WAIT"))
  .addOption(
    opt(
      "--request-timeout <ms>",
      "timeout of a worker call that should answer at once (default 30000)",
      "REQUEST_TIMEOUT",
    ),
  )
  .addOption(
    opt(
      "--machine-grace <ms>",
      "how long a silent machine keeps its running tasks (default 5000)",
      "MACHINE_GRACE",
    ),
  )
  .addOption(opt("--sync-timeout <ms>", "longest wait of POST /tasks/sync (default 3600000)", "SYNC_TIMEOUT"))
  .addOption(opt("--max-upload-mb <mb>", "largest accepted file per field (default 2048)", "MAX_UPLOAD_MB"))
  .addOption(opt("--max-attempts <n>", "machines a task may try before it fails (default 3)", "MAX_ATTEMPTS"))
  .addOption(
    opt("--callback-tries <n>", "deliveries of one callback before giving up (default 6)", "CALLBACK_TRIES"),
  )
  .addOption(
    opt(
      "--callback-retry <ms>",
      "first callback retry delay, doubling each time (default 1000)",
      "CALLBACK_RETRY",
    ),
  )
  .addOption(
    opt("--callback-timeout <ms>", "timeout of one callback POST (default 10000)", "CALLBACK_TIMEOUT"),
  )
  .addOption(opt("--worker-token <token>", "shared secret sent to worker agents", "WORKER_TOKEN"))
  .addOption(opt("--log-level <level>", "trace, debug, info, warn, error (default info)", "LOG_LEVEL"))
  .action(async (flags: GatewayFlags) => {
    const config = resolveGatewayConfig(flags);
    const logger = createLogger({ level: config.logLevel });
    const { startGateway } = await import("./gateway/server.js");
    const gateway = await startGateway(config, logger);
    closeOnSignals(logger, () => gateway.close());
  });

program
  .command("worker")
  .description("worker agent on a GPU machine, in front of its engine (protocol /v1)")
  .addOption(opt("--host <host>", "address to listen on (default 0.0.0.0)", "WORKER_HOST"))
  .addOption(opt("--port <port>", "port to listen on (default 8000)", "WORKER_PORT"))
  .addOption(opt("--engine <name>", `engine: ${engineNames().join(", ")} (default ffmpeg)`, "ENGINE"))
  .addOption(
    opt("--data-dir <dir>", "blob cache, job records and results (default ./worker-data)", "WORKER_DATA_DIR"),
  )
  .addOption(opt("--max-concurrent <n>", "jobs run at once (default 1)", "MAX_CONCURRENT"))
  .addOption(opt("--token <token>", "shared secret the gateway must send", "WORKER_TOKEN"))
  .addOption(
    opt(
      "--result-retention-hours <h>",
      "keep finished jobs this long (default 24)",
      "RESULT_RETENTION_HOURS",
    ),
  )
  .addOption(
    opt(
      "--command <template>",
      "command engine: the command to run per job, e.g. 'python infer.py --audio {audio} --video {video} --out {output}'",
      "COMMAND",
    ),
  )
  .addOption(
    opt(
      "--command-timeout <s>",
      "command engine: kill a job's command after this long (default none)",
      "COMMAND_TIMEOUT",
    ),
  )
  .addOption(
    opt(
      "--command-input-exit-codes <codes>",
      "command engine: exit codes meaning the input is at fault, e.g. 2,3 (no retry elsewhere)",
      "COMMAND_INPUT_EXIT_CODES",
    ),
  )
  .addOption(
    opt(
      "--command-cwd <dir>",
      "command engine: run the command here (default: the job's work dir)",
      "COMMAND_CWD",
    ),
  )
  .addOption(
    opt(
      "--speed-factor <x>",
      "simulate engine: seconds of work per second of audio (default 1)",
      "SPEED_FACTOR",
    ),
  )
  .addOption(opt("--time-scale <x>", "simulate engine: multiplies every wait (default 1)", "TIME_SCALE"))
  .addOption(
    opt(
      "--heygem <url=dir>",
      "heygem engine: one container, e.g. http://127.0.0.1:8383=/home/me/heygem_data/face2face (its URL = " +
        "the host folder mapped to /code/data); repeat per container, or separate with commas",
      "HEYGEM",
    ).argParser(collectHeygemFlag),
  )
  .addOption(
    opt(
      "--heygem-poll-interval <ms>",
      "heygem: between queries of a task (default 2000)",
      "HEYGEM_POLL_INTERVAL",
    ),
  )
  .addOption(
    opt(
      "--heygem-stall-timeout <ms>",
      "heygem: fail a task without progress this long (default 600000)",
      "HEYGEM_STALL_TIMEOUT",
    ),
  )
  .addOption(
    opt(
      "--heygem-timeout-base <ms>",
      "heygem: overall limit of a task, base (default 120000)",
      "HEYGEM_TIMEOUT_BASE",
    ),
  )
  .addOption(
    opt(
      "--heygem-timeout-per-second <ms>",
      "heygem: overall limit, added per second of audio (default 30000)",
      "HEYGEM_TIMEOUT_PER_SECOND",
    ),
  )
  .addOption(
    opt(
      "--heygem-busy-timeout <ms>",
      "heygem: how long a job waits while containers are busy (default 600000)",
      "HEYGEM_BUSY_TIMEOUT",
    ),
  )
  .addOption(
    opt(
      "--heygem-busy-backoff <ms>",
      "heygem: first wait after a busy answer, doubling (default 5000)",
      "HEYGEM_BUSY_BACKOFF",
    ),
  )
  .addOption(
    opt(
      "--heygem-request-timeout <ms>",
      "heygem: bound on one call to a container (default 30000)",
      "HEYGEM_REQUEST_TIMEOUT",
    ),
  )
  .addOption(
    opt(
      "--heygem-probe-interval <ms>",
      "heygem: how often an idle container is probed (default 10000)",
      "HEYGEM_PROBE_INTERVAL",
    ),
  )
  .addOption(
    opt(
      "--heygem-unreachable-grace <ms>",
      "heygem: how long a running task's container may not answer (default 30000)",
      "HEYGEM_UNREACHABLE_GRACE",
    ),
  )
  .addOption(
    opt(
      "--config <file>",
      "worker settings file (JSON, e.g. worker.json); flags win over it",
      "WORKER_CONFIG",
    ),
  )
  .addOption(opt("--log-level <level>", "trace, debug, info, warn, error (default info)", "LOG_LEVEL"))
  .action(async (flags: WorkerFlags) => {
    const config = resolveWorkerConfig(flags, engineNames());
    const logger = createLogger({ level: config.logLevel });
    const { startWorker } = await import("./worker/agent.js");
    const engine = createEngine(config.engine, { maxConcurrent: config.maxConcurrent, logger, config });
    const worker = await startWorker({
      host: config.host,
      port: config.port,
      dataDir: config.dataDir,
      engine,
      ...(config.token ? { token: config.token } : {}),
      logger,
      version: VERSION,
      resultRetentionMs: config.resultRetentionMs,
    });
    logger.info(
      { url: worker.url, engine: config.engine, data_dir: config.dataDir },
      "worker agent listening",
    );
    // The engine after the worker: the worker's jobs settle first (heygem's are left to resume).
    closeOnSignals(logger, async () => {
      await worker.close();
      await engine.close?.();
    });
  });

/** SIGTERM/SIGINT: stop taking work, let what runs finish (bounded), then exit 0. */
function closeOnSignals(logger: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    const force = setTimeout(() => {
      logger.warn("shutdown took too long; exiting");
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof StartupError) {
    console.error(`multi-heygem: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof ConfigError) {
    console.error(`multi-heygem: configuration error: ${err.message}`);
    process.exit(2);
  }
  const { code, address, port } = err as { code?: string; address?: string; port?: number };
  if (code === "EADDRINUSE" || code === "EACCES") {
    const what = code === "EADDRINUSE" ? "is already in use" : "may not be used by this user";
    console.error(`multi-heygem: ${address ?? ""}:${port ?? ""} ${what}; choose another with --port`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
