import type { CommandEngineSettings } from "../engines/command-engine.js";
import type { HeygemSettings } from "../engines/heygem/heygem-settings.js";
import type { SimulateEngineSettings } from "../engines/simulate-engine.js";
import { ConfigError } from "../errors.js";
import { isLoopbackHost } from "../http/loopback.js";
import { resolveCommandSettings, resolveSimulateSettings } from "./engine-settings.js";
import { resolveHeygemSettings } from "./heygem-config.js";
import { type RawFlags, readSetting, readSettings } from "./options.js";
import { loadWorkerFile, type WorkerFile } from "./worker-file.js";
import { WORKER_OPTIONS } from "./worker-options.js";

export interface WorkerConfig {
  readonly host: string;
  readonly port: number;
  readonly engine: string;
  readonly dataDir: string;
  readonly maxConcurrent: number;
  readonly token: string | undefined;
  /** Started without a token on a network address, on purpose (`--insecure-no-token`). */
  readonly insecureNoToken: boolean;
  readonly resultRetentionMs: number;
  /** On SIGTERM: how long running jobs may finish before the agent stops them. */
  readonly shutdownGraceMs: number;
  /** The blob cache's soft limit; 0: none; undefined: the worker's default from its disk's size. */
  readonly cacheMaxBytes: number | undefined;
  readonly logLevel: string;
  /** `undefined`: pretty on a terminal, else JSON lines. */
  readonly logFormat: "json" | "pretty" | undefined;
  /** The command engine's template and limits; set when --command is given (--engine command needs it). */
  readonly command?: CommandEngineSettings;
  readonly simulate: SimulateEngineSettings;
  /** The worker file in force (`--config`), if any. */
  readonly configFile?: string;
  /** The heygem engine's instances and timers; set when instances are given (--engine heygem needs them). */
  readonly heygem?: HeygemSettings;
}

/** Raw option values as commander hands them over (worker-options.ts). */
export type WorkerFlags = RawFlags<typeof WORKER_OPTIONS>;

export function resolveWorkerConfig(
  flags: WorkerFlags,
  engines: readonly string[],
  cwd = process.cwd(),
): WorkerConfig {
  const configFile = readSetting(WORKER_OPTIONS.config, flags.config, { cwd });
  const file: WorkerFile = configFile ? loadWorkerFile(configFile) : {};
  // Paths in the file count from the file's folder, those on the command line from the cwd.
  const options = readSettings(WORKER_OPTIONS, flags, {
    cwd,
    file: configFile ? { path: configFile, values: file } : undefined,
  });
  const engine = options.engine;
  if (!engines.includes(engine)) {
    const fromFile = configFile !== undefined && (flags.engine ?? "").trim() === "";
    const [source, field] = fromFile ? [configFile, "engine"] : ["--engine", ""];
    throw new ConfigError(source, field, `"${engine}" is not one of ${engines.join(", ")}`);
  }
  const heygem = resolveHeygemSettings(
    options,
    configFile ? { path: configFile, section: file.heygem } : undefined,
    cwd,
  );
  if (engine === "heygem" && !heygem) {
    throw new ConfigError(
      "--heygem",
      "",
      "--engine heygem needs at least one instance, e.g. --heygem http://127.0.0.1:8383=/home/me/heygem_data/face2face " +
        "(or heygem.instances in the --config file)",
    );
  }
  const command = resolveCommandSettings(options, engine, cwd);
  return Object.freeze({
    host: options.host,
    port: options.port,
    engine,
    dataDir: options.dataDir,
    maxConcurrent: options.maxConcurrent,
    token: options.token,
    insecureNoToken: options.insecureNoToken,
    resultRetentionMs: options.resultRetentionHours * 3_600_000,
    shutdownGraceMs: options.shutdownGrace,
    cacheMaxBytes: cacheBytes(options.cacheMaxGb),
    logLevel: options.logLevel,
    logFormat: options.logFormat,
    ...(command ? { command } : {}),
    simulate: resolveSimulateSettings(options),
    ...(configFile ? { configFile } : {}),
    ...(heygem ? { heygem } : {}),
  });
}

/** GB as bytes; a positive value however small stays a limit (0 alone means none). */
function cacheBytes(gb: number | undefined): number | undefined {
  if (gb === undefined) return undefined;
  return gb === 0 ? 0 : Math.max(1, Math.round(gb * 1e9));
}

/**
 * Workers are closed by default (issue 9): one that listens on a network address without a token
 * would run anyone's jobs and delete their files, so it does not start unless told to, on purpose.
 * Checked by the CLI after every other setting, so that any other mistake is reported first.
 */
export function checkWorkerExposure(config: WorkerConfig): void {
  if (config.token === undefined && !config.insecureNoToken && !isLoopbackHost(config.host)) {
    throw new ConfigError(
      "--token",
      "",
      `a worker listening on ${config.host} can be reached from the network, so it needs a token: ` +
        "set --token <secret> or MULTI_HEYGEM_WORKER_TOKEN (the gateway sends it as --worker-token), " +
        "or listen on 127.0.0.1, or start it open with --insecure-no-token",
    );
  }
}
