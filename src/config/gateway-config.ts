import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { loadMachinesFile, type MachineEntry } from "./machines-file.js";
import { PLACEMENT_NAMES, type PlacementName } from "./placement-names.js";

export const DEFAULT_MACHINES_FILE = "config/machines.json";

/** Everything the gateway needs, parsed once at start-up and frozen. */
export interface GatewayConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** The machines file in force, or undefined when none is used. */
  readonly machinesFile: string | undefined;
  readonly machines: readonly MachineEntry[];
  readonly workerToken: string | undefined;
  /** Run a local ffmpeg worker inside the gateway, beside any configured machines. */
  readonly embedded: boolean;
  readonly embeddedConcurrency: number;
  readonly healthIntervalMs: number;
  readonly probeTimeoutMs: number;
  /** Consecutive failed probes that take a machine out of placement. */
  readonly failureThreshold: number;
  readonly placement: PlacementName;
  /** A task not finished this long after creation fails (0 = never). */
  readonly taskTimeoutMs: number;
  /** How long one long-poll of a worker's job may hang before it is asked again. */
  readonly pollWaitMs: number;
  /** Bound on a single request to a worker that should answer at once. */
  readonly requestTimeoutMs: number;
  /** A worker that cannot be reached for this long loses its running attempts to other machines. */
  readonly machineGraceMs: number;
  readonly syncTimeoutMs: number;
  readonly maxUploadBytes: number;
  readonly maxAttempts: number;
  readonly callbackMaxTries: number;
  readonly callbackRetryBaseMs: number;
  readonly callbackTimeoutMs: number;
  readonly logLevel: string;
}

/** Raw option values as commander hands them over (strings from flags or env). */
export interface GatewayFlags {
  host?: string;
  port?: string;
  config?: string;
  dataDir?: string;
  embedded?: boolean;
  embeddedConcurrency?: string;
  healthInterval?: string;
  probeTimeout?: string;
  failureThreshold?: string;
  placement?: string;
  taskTimeout?: string;
  pollWait?: string;
  requestTimeout?: string;
  machineGrace?: string;
  syncTimeout?: string;
  maxUploadMb?: string;
  maxAttempts?: string;
  callbackTries?: string;
  callbackRetry?: string;
  callbackTimeout?: string;
  workerToken?: string;
  logLevel?: string;
}

export function int(flag: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new ConfigError(`--${flag}`, "", `expected an integer ≥ ${min}, got "${value}"`);
  }
  return n;
}

export function resolveGatewayConfig(flags: GatewayFlags, cwd = process.cwd()): GatewayConfig {
  let machinesFile: string | undefined;
  if (flags.config !== undefined && flags.config !== "") machinesFile = resolve(cwd, flags.config);
  else if (existsSync(resolve(cwd, DEFAULT_MACHINES_FILE)))
    machinesFile = resolve(cwd, DEFAULT_MACHINES_FILE);
  const file = machinesFile ? loadMachinesFile(machinesFile) : undefined;
  // Without any machines file a fresh clone must still turn audio + video into an MP4.
  const embedded = flags.embedded === true || machinesFile === undefined;
  return Object.freeze({
    host: flags.host ?? "0.0.0.0",
    port: int("port", flags.port, 8101),
    dataDir: resolve(cwd, flags.dataDir ?? "data"),
    machinesFile,
    machines: Object.freeze(file?.machines ?? []),
    workerToken: flags.workerToken ?? file?.worker_token,
    embedded,
    embeddedConcurrency: int("embedded-concurrency", flags.embeddedConcurrency, 1, 1),
    healthIntervalMs: int("health-interval", flags.healthInterval, 1000, 10),
    probeTimeoutMs: int("probe-timeout", flags.probeTimeout, 2000, 10),
    failureThreshold: int("failure-threshold", flags.failureThreshold, 2, 1),
    placement: placement(flags.placement),
    taskTimeoutMs: int("task-timeout", flags.taskTimeout, 6 * 3_600_000, 0),
    pollWaitMs: int("poll-wait", flags.pollWait, 20_000, 0),
    requestTimeoutMs: int("request-timeout", flags.requestTimeout, 30_000, 10),
    machineGraceMs: int("machine-grace", flags.machineGrace, 5_000, 0),
    syncTimeoutMs: int("sync-timeout", flags.syncTimeout, 3_600_000, 1),
    maxUploadBytes: int("max-upload-mb", flags.maxUploadMb, 2048, 1) * 1024 * 1024,
    maxAttempts: int("max-attempts", flags.maxAttempts, 3, 1),
    callbackMaxTries: int("callback-tries", flags.callbackTries, 6, 1),
    callbackRetryBaseMs: int("callback-retry", flags.callbackRetry, 1000, 1),
    callbackTimeoutMs: int("callback-timeout", flags.callbackTimeout, 10_000, 1),
    logLevel: flags.logLevel ?? "info",
  });
}

function placement(value: string | undefined): PlacementName {
  if (value === undefined || value === "") return "earliest-finish";
  const known = PLACEMENT_NAMES.find((n) => n === value);
  if (!known)
    throw new ConfigError("--placement", "", `expected one of ${PLACEMENT_NAMES.join(", ")}, got "${value}"`);
  return known;
}
