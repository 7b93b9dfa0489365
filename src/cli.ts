#!/usr/bin/env node
import { resolve } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { registerClientCommands } from "./commands/register.js";
import { type GatewayFlags, resolveGatewayConfig } from "./config/gateway-config.js";
import { GATEWAY_OPTIONS } from "./config/gateway-options.js";
import { ENV_PREFIX, helpText, type OptionTable } from "./config/options.js";
import { collect, repeated } from "./config/value-types.js";
import { checkWorkerExposure, resolveWorkerConfig, type WorkerFlags } from "./config/worker-config.js";
import { WORKER_OPTIONS } from "./config/worker-options.js";
import { createEngine, engineNames } from "./engines/registry.js";
import { createSpeaker } from "./engines/speech/speakers.js";
import { ConfigError, StartupError } from "./errors.js";
import { ROLES } from "./gateway/auth/api-keys.js";
import { isLoopbackHost } from "./http/loopback.js";
import { createLogger, type Logger } from "./logger.js";
import { VERSION } from "./version.js";

/** After the grace, how long closing may take before the process gives up and exits 1. */
const CLOSE_TIMEOUT_MS = 30_000;

const program = new Command()
  .name("multi-heygem")
  .description("Lip-sync video synthesis on a fleet of GPU machines")
  .version(VERSION)
  // Before the subcommands, which copy these: commander's own errors (an unknown option, a missing
  // value) end the way ours do, as one line and exit code 2, instead of calling process.exit itself.
  .exitOverride()
  .configureOutput({
    outputError: (message, write) =>
      write(
        `multi-heygem: ${message
          .replace(/^error: /, "")
          .replace(/\s*\n\s*/g, " ")
          .trim()}\n`,
      ),
  });

addOptions(
  program.command("gateway").description("REST API, queue and dispatcher (what `npm start` runs)"),
  GATEWAY_OPTIONS,
).action(async (flags: GatewayFlags, command: Command) => {
  const config = namingEnv(command, () =>
    resolveGatewayConfig(flags, process.cwd(), { DATABASE_URL: process.env.DATABASE_URL }),
  );
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const { startGateway } = await import("./gateway/server.js");
  const gateway = await startGateway(config, logger);
  stopOnSignals(logger, config.shutdownGraceMs, async (hurry) => {
    await gateway.drain({ graceMs: config.shutdownGraceMs, hurry });
    await gateway.close();
  });
});

addOptions(
  program
    .command("worker")
    .description("worker agent on a GPU machine, in front of its engine (protocol /v1)"),
  WORKER_OPTIONS,
  { engine: engineNames() },
).action(async (flags: WorkerFlags, command: Command) => {
  const config = namingEnv(command, () => resolveWorkerConfig(flags, engineNames()));
  checkWorkerExposure(config);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  // Past checkWorkerExposure this is a worker started open on purpose (--insecure-no-token).
  if (config.token === undefined && !isLoopbackHost(config.host)) {
    logger.warn(
      { host: config.host },
      "--insecure-no-token: this worker has NO token and listens on the network; anyone who reaches it " +
        "can run jobs, read results and delete files. Set --token (and the gateway's --worker-token)",
    );
  }
  const { startWorker } = await import("./worker/agent.js");
  const engine = createEngine(config.engine, { maxConcurrent: config.maxConcurrent, logger, config });
  const speaker = createSpeaker({ engine: config.engine, tts: config.tts, dataDir: config.dataDir, logger });
  const worker = await startWorker({
    host: config.host,
    port: config.port,
    dataDir: config.dataDir,
    engine,
    ...(speaker ? { speaker } : {}),
    ...(config.token ? { token: config.token } : {}),
    logger,
    version: VERSION,
    resultRetentionMs: config.resultRetentionMs,
    ...(config.cacheMaxBytes === undefined ? {} : { cacheMaxBytes: config.cacheMaxBytes }),
  });
  logger.info({ url: worker.url, engine: config.engine, data_dir: config.dataDir }, "worker agent listening");
  // The engine after the worker: the worker's jobs settle first (heygem's are left to resume).
  stopOnSignals(logger, config.shutdownGraceMs, async (hurry) => {
    await worker.drain({ graceMs: config.shutdownGraceMs, hurry });
    await worker.close();
    await engine.close?.();
    await speaker?.close?.();
  });
});

const keys = program
  .command("keys")
  .description("the gateway's API keys file (--api-keys): add, list or remove keys");
const keysFile = () =>
  new Option("--file <file>", "the API keys file").env(`${ENV_PREFIX}API_KEYS`).makeOptionMandatory();
keys
  .command("add")
  .description("make a new random key, store only its SHA-256, and print the key once on stdout")
  .requiredOption("--name <name>", "who holds the key, e.g. shop; becomes the owner of its tasks")
  .requiredOption("--role <role>", `${ROLES.join(" or ")}`)
  .addOption(keysFile())
  .action(async (flags: { name: string; role: string; file: string }) => {
    const { addKey } = await import("./gateway/auth/keys-file-editor.js");
    const key = await addKey(resolve(flags.file), flags.name, flags.role);
    // The key alone on stdout, so that `KEY=$(multi-heygem keys add …)` takes it; the note beside it.
    process.stdout.write(`${key}\n`);
    process.stderr.write(
      `multi-heygem: added key "${flags.name}" (${flags.role}) to ${flags.file}; it is shown only this once\n`,
    );
  });
keys
  .command("list")
  .description("the keys' names, roles and hash prefixes (the keys themselves are not stored)")
  .addOption(keysFile())
  .action(async (flags: { file: string }) => {
    const { listKeys } = await import("./gateway/auth/keys-file-editor.js");
    for (const key of listKeys(resolve(flags.file))) {
      process.stdout.write(`${key.name}\t${key.role}\tsha256:${key.sha256.slice(0, 12)}…\n`);
    }
  });
keys
  .command("remove")
  .description("remove a key; a running gateway refuses it once it has re-read the file")
  .requiredOption("--name <name>", "the key to remove")
  .addOption(keysFile())
  .action(async (flags: { name: string; file: string }) => {
    const { removeKey } = await import("./gateway/auth/keys-file-editor.js");
    await removeKey(resolve(flags.file), flags.name);
    process.stderr.write(`multi-heygem: removed key "${flags.name}" from ${flags.file}\n`);
  });

registerClientCommands(program);

/**
 * The command's flags from its options table: help text with the default, environment variable,
 * and a collector for a repeated flag. No commander defaults and no parsing here: the resolver
 * reads every value, so that worker.json can come between a flag and its default.
 */
function addOptions<Table extends OptionTable>(
  command: Command,
  table: Table,
  choices: Partial<Record<keyof Table, readonly string[]>> = {},
): Command {
  for (const [key, spec] of Object.entries(table)) {
    const flags = spec.value ? `${spec.flag} ${spec.value}` : spec.flag;
    const option = new Option(flags, helpText(spec, choices[key])).env(`${ENV_PREFIX}${spec.env}`);
    if (spec.type === repeated) option.argParser(collect);
    // commander stores the value under this name; any other key would read as never given.
    if (option.attributeName() !== key) throw new Error(`${spec.flag} is declared as "${key}"`);
    command.addOption(option);
  }
  return command;
}

/** A bad value set in the environment also names the variable: the command line shows no flag. */
function namingEnv<T>(command: Command, resolve: () => T): T {
  try {
    return resolve();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const option = command.options.find((o) => o.long === err.source);
    if (option?.envVar === undefined || command.getOptionValueSource(option.attributeName()) !== "env") {
      throw err;
    }
    throw new ConfigError(err.source, err.fieldPath, `${err.problem} (set in ${option.envVar})`);
  }
}

/**
 * SIGTERM/SIGINT: stop taking work, let what runs finish within `graceMs`, close, exit 0. A second
 * signal cuts the grace short (`hurry`), as most servers do; closing is bounded too, past which the
 * process exits 1 rather than hang a service manager's stop.
 */
function stopOnSignals(logger: Logger, graceMs: number, stop: (hurry: AbortSignal) => Promise<void>): void {
  const hurry = new AbortController();
  let stopping = false;
  const exitAfter = (ms: number) => {
    const force = setTimeout(() => {
      logger.warn("shutdown took too long; exiting");
      process.exit(1);
    }, ms);
    force.unref();
  };
  const onSignal = (signal: string) => {
    if (stopping) {
      if (hurry.signal.aborted) return;
      logger.warn({ signal }, "second signal: stopping now");
      hurry.abort();
      exitAfter(CLOSE_TIMEOUT_MS);
      return;
    }
    stopping = true;
    logger.info({ signal, grace_ms: graceMs }, "shutting down");
    exitAfter(graceMs + CLOSE_TIMEOUT_MS);
    stop(hurry.signal).then(
      () => {
        logger.info("exiting");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Already written by commander: help and --version end well, a usage error like a bad value.
    process.exit(err.exitCode === 0 || err.code === "commander.help" ? err.exitCode : 2);
  }
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
