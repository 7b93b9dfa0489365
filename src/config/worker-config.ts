import { resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { int } from "./gateway-config.js";

export interface WorkerConfig {
  readonly host: string;
  readonly port: number;
  readonly engine: string;
  readonly dataDir: string;
  readonly maxConcurrent: number;
  readonly token: string | undefined;
  readonly resultRetentionMs: number;
  readonly logLevel: string;
}

export interface WorkerFlags {
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
  const engine = flags.engine ?? "ffmpeg";
  if (!engines.includes(engine)) {
    throw new ConfigError("--engine", "", `unknown engine "${engine}"; choose one of: ${engines.join(", ")}`);
  }
  return Object.freeze({
    host: flags.host ?? "0.0.0.0",
    port: int("port", flags.port, 8000),
    engine,
    dataDir: resolve(cwd, flags.dataDir ?? "worker-data"),
    maxConcurrent: int("max-concurrent", flags.maxConcurrent, 1, 1),
    token: flags.token || undefined,
    resultRetentionMs: int("result-retention-hours", flags.resultRetentionHours, 24, 0) * 3_600_000,
    logLevel: flags.logLevel ?? "info",
  });
}
