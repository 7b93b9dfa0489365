#!/usr/bin/env node
import { Command, Option } from "commander";
import { type GatewayFlags, resolveGatewayConfig } from "./config/gateway-config.js";
import { resolveWorkerConfig, type WorkerFlags } from "./config/worker-config.js";
import { createEngine, engineNames } from "./engines/registry.js";
import { ConfigError } from "./errors.js";
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
    opt("--health-interval <ms>", "how often each machine is probed (default 2000)", "HEALTH_INTERVAL"),
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
      "how long a silent machine keeps its running tasks (default 10000)",
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
  .addOption(opt("--log-level <level>", "trace, debug, info, warn, error (default info)", "LOG_LEVEL"))
  .action(async (flags: WorkerFlags) => {
    const config = resolveWorkerConfig(flags, engineNames());
    const logger = createLogger({ level: config.logLevel });
    const { startWorker } = await import("./worker/agent.js");
    const worker = await startWorker({
      host: config.host,
      port: config.port,
      dataDir: config.dataDir,
      engine: createEngine(config.engine, { maxConcurrent: config.maxConcurrent, logger, config }),
      ...(config.token ? { token: config.token } : {}),
      logger,
      version: VERSION,
      resultRetentionMs: config.resultRetentionMs,
    });
    logger.info(
      { url: worker.url, engine: config.engine, data_dir: config.dataDir },
      "worker agent listening",
    );
    closeOnSignals(logger, () => worker.close());
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
  if (err instanceof ConfigError) {
    console.error(`multi-heygem: configuration error: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
