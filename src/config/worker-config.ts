import { dirname, resolve } from "node:path";
import type { CommandEngineSettings } from "../engines/command-engine.js";
import type { HeygemSettings } from "../engines/heygem/heygem-settings.js";
import type { SimulateEngineSettings } from "../engines/simulate-engine.js";
import { ConfigError } from "../errors.js";
import {
  type CommandFlags,
  resolveCommandSettings,
  resolveSimulateSettings,
  type SimulateFlags,
} from "./engine-settings.js";
import { int } from "./gateway-config.js";
import { type HeygemFlags, resolveHeygemSettings } from "./heygem-config.js";
import { loadWorkerFile, type WorkerFile } from "./worker-file.js";

export interface WorkerConfig {
  readonly host: string;
  readonly port: number;
  readonly engine: string;
  readonly dataDir: string;
  readonly maxConcurrent: number;
  readonly token: string | undefined;
  readonly resultRetentionMs: number;
  readonly logLevel: string;
  /** The command engine's template and limits; set when --command is given (--engine command needs it). */
  readonly command?: CommandEngineSettings;
  readonly simulate: SimulateEngineSettings;
  /** The worker file in force (`--config`), if any. */
  readonly configFile?: string;
  /** The heygem engine's instances and timers; set when instances are given (--engine heygem needs them). */
  readonly heygem?: HeygemSettings;
}

export interface WorkerFlags extends CommandFlags, SimulateFlags, HeygemFlags {
  /** A worker file (worker-file.ts); flags win over it. */
  config?: string;
  host?: string;
  port?: string;
  engine?: string;
  dataDir?: string;
  maxConcurrent?: string;
  token?: string;
  resultRetentionHours?: string;
  logLevel?: string;
}

export function resolveWorkerConfig(
  flags: WorkerFlags,
  engines: readonly string[],
  cwd = process.cwd(),
): WorkerConfig {
  const configFile = flags.config ? resolve(cwd, flags.config) : undefined;
  const file: WorkerFile = configFile ? loadWorkerFile(configFile) : {};
  const engine = flags.engine ?? file.engine ?? "ffmpeg";
  if (!engines.includes(engine)) {
    const [source, field] =
      flags.engine === undefined && configFile ? [configFile, "engine"] : ["--engine", ""];
    throw new ConfigError(source, field, `unknown engine "${engine}"; choose one of: ${engines.join(", ")}`);
  }
  const heygem = resolveHeygemSettings(
    flags,
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
  const command = resolveCommandSettings(flags, engine, cwd);
  return Object.freeze({
    host: flags.host ?? file.host ?? "0.0.0.0",
    port: int("port", flags.port, file.port ?? 8000),
    engine,
    // A path in the file counts from the file's folder, one on the command line from the cwd.
    dataDir: flags.dataDir
      ? resolve(cwd, flags.dataDir)
      : configFile && file.data_dir
        ? resolve(dirname(configFile), file.data_dir)
        : resolve(cwd, "worker-data"),
    maxConcurrent: int("max-concurrent", flags.maxConcurrent, file.max_concurrent ?? 1, 1),
    token: flags.token || file.token || undefined,
    resultRetentionMs:
      int("result-retention-hours", flags.resultRetentionHours, file.result_retention_hours ?? 24, 0) *
      3_600_000,
    logLevel: flags.logLevel ?? file.log_level ?? "info",
    ...(command ? { command } : {}),
    simulate: resolveSimulateSettings(flags),
    ...(configFile ? { configFile } : {}),
    ...(heygem ? { heygem } : {}),
  });
}
