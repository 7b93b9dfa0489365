import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { type AllowList, parseAllowList } from "../http/allow-list.js";
import { parseWebhookSecret } from "../http/webhook-signature.js";
import { DEFAULT_MACHINES_FILE, GATEWAY_OPTIONS } from "./gateway-options.js";
import { loadMachinesFile, type MachineEntry } from "./machines-file.js";
import { type RawFlags, readSettings } from "./options.js";
import type { PlacementName } from "./placement-names.js";
import { showDuration } from "./value-types.js";

/** Everything the gateway needs, parsed once at start-up and frozen. */
export interface GatewayConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /**
   * Where the blobs are kept (`--blobs-dir`, else `blobs/` in the data dir): with several gateways
   * on one PostgreSQL store, one folder they all share (issue 13).
   */
  readonly blobsDir: string;
  /**
   * The PostgreSQL store's URL (`--store`, else `DATABASE_URL`); undefined: the SQLite file in
   * the data dir. Secret (it may hold a password): log it through `redactUrl`.
   */
  readonly storeUrl: string | undefined;
  /** The machines file in force, or undefined when none is used. */
  readonly machinesFile: string | undefined;
  readonly machines: readonly MachineEntry[];
  readonly workerToken: string | undefined;
  /** Who may call the API; undefined: nobody needs a key (open mode). */
  readonly apiKeysFile: string | undefined;
  /** Web origins given CORS headers; empty: none. */
  readonly corsOrigins: readonly string[];
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
  /** On SIGTERM: how long the responses and embedded jobs in flight may take. */
  readonly shutdownGraceMs: number;
  readonly maxUploadBytes: number;
  /** Pending tasks beyond which a new task is refused with 429 (issue 9). */
  readonly maxPending: number;
  readonly maxAudioSeconds: number;
  /** Free bytes kept under the data dir; uploads are refused with 507 below it (0 = no floor). */
  readonly minFreeDiskBytes: number;
  /** Headers of a request must arrive within this (slow-loris). */
  readonly headerTimeoutMs: number;
  /** An upload that sends no byte for this long is cut off. */
  readonly uploadIdleTimeoutMs: number;
  /** A whole request, upload included, must have arrived within this. */
  readonly uploadTimeoutMs: number;
  readonly maxAttempts: number;
  /** A finished task's blobs are deleted this long after it ended (0 = kept forever). */
  readonly retentionMs: number;
  /** Its rows this long after it ended (0 = kept forever); never shorter than retentionMs. */
  readonly retentionRowsMs: number;
  readonly callbackMaxTries: number;
  readonly callbackRetryBaseMs: number;
  readonly callbackTimeoutMs: number;
  /** The key of `--callback-secret`; undefined: callbacks go out unsigned. */
  readonly callbackSigningKey: Buffer | undefined;
  /** `--callback-allow`; undefined: any destination the address policy does not refuse. */
  readonly callbackAllow: AllowList | undefined;
  /** `--public-url` without a trailing slash; undefined: the listening address. */
  readonly publicUrl: string | undefined;
  readonly logLevel: string;
  /** `undefined`: pretty on a terminal, else JSON lines. */
  readonly logFormat: "json" | "pretty" | undefined;
}

/** Raw option values as commander hands them over (gateway-options.ts). */
export type GatewayFlags = RawFlags<typeof GATEWAY_OPTIONS>;

/**
 * `env` holds the variables read besides the options' own (`MULTI_HEYGEM_…`, which commander
 * reads): `DATABASE_URL`, the name most hosts give a PostgreSQL URL.
 */
export function resolveGatewayConfig(
  flags: GatewayFlags,
  cwd = process.cwd(),
  env: { readonly DATABASE_URL?: string | undefined } = {},
): GatewayConfig {
  const options = readSettings(GATEWAY_OPTIONS, flags, { cwd });
  // Node refuses a server whose headers may take longer than the whole request.
  if (options.headerTimeout > options.uploadTimeout) {
    throw new ConfigError(
      GATEWAY_OPTIONS.headerTimeout.flag,
      "",
      `${options.headerTimeout} ms is longer than --upload-timeout (${options.uploadTimeout} ms)`,
    );
  }
  let machinesFile = options.config;
  if (machinesFile === undefined && existsSync(resolve(cwd, DEFAULT_MACHINES_FILE)))
    machinesFile = resolve(cwd, DEFAULT_MACHINES_FILE);
  const file = machinesFile ? loadMachinesFile(machinesFile) : undefined;
  // Without any machines file a fresh clone must still turn audio + video into an MP4.
  const embedded = options.embedded === true || machinesFile === undefined;
  return Object.freeze({
    host: options.host,
    port: options.port,
    dataDir: options.dataDir,
    blobsDir: options.blobsDir ?? join(options.dataDir, "blobs"),
    storeUrl: options.store ?? databaseUrl(env.DATABASE_URL),
    machinesFile,
    machines: Object.freeze(file?.machines ?? []),
    workerToken: options.workerToken ?? file?.worker_token,
    apiKeysFile: options.apiKeys,
    corsOrigins: Object.freeze(corsOrigins(options.corsOrigin ?? [])),
    embedded,
    embeddedConcurrency: options.embeddedConcurrency,
    healthIntervalMs: options.healthInterval,
    probeTimeoutMs: options.probeTimeout,
    failureThreshold: options.failureThreshold,
    placement: options.placement,
    taskTimeoutMs: options.taskTimeout,
    pollWaitMs: options.pollWait,
    requestTimeoutMs: options.requestTimeout,
    machineGraceMs: options.machineGrace,
    syncTimeoutMs: options.syncTimeout,
    shutdownGraceMs: options.shutdownGrace,
    maxUploadBytes: options.maxUploadMb * 1024 * 1024,
    maxPending: options.maxPending,
    maxAudioSeconds: options.maxAudioSeconds,
    minFreeDiskBytes: options.minFreeDisk * 1024 * 1024,
    headerTimeoutMs: options.headerTimeout,
    uploadIdleTimeoutMs: options.uploadIdleTimeout,
    uploadTimeoutMs: options.uploadTimeout,
    maxAttempts: options.maxAttempts,
    retentionMs: options.retention,
    retentionRowsMs: retentionRows(options.retention, options.retentionRows),
    callbackMaxTries: options.callbackTries,
    callbackRetryBaseMs: options.callbackRetry,
    callbackTimeoutMs: options.callbackTimeout,
    callbackSigningKey: options.callbackSecret ? parseWebhookSecret(options.callbackSecret) : undefined,
    callbackAllow: allowList(options.callbackAllow),
    publicUrl: options.publicUrl,
    logLevel: options.logLevel,
    logFormat: options.logFormat,
  });
}

/** `DATABASE_URL`, when `--store` is not given: a PostgreSQL URL, or a ConfigError naming it. */
function databaseUrl(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const url = GATEWAY_OPTIONS.store.type.parse(value);
  if (url === undefined) {
    throw new ConfigError("DATABASE_URL", "", `the value is not ${GATEWAY_OPTIONS.store.type.expected}`);
  }
  return url;
}

const DEFAULT_RETENTION_ROWS_MS = 30 * 86_400_000;

/**
 * `--retention-rows`: a task's record outlives its files, so that `GET /tasks/{id}` can still say
 * what became of it (and answer 410 for its result) after the files are gone. A record deleted
 * before its files would leave blobs nobody accounts for, so a shorter value is refused; left
 * unset, it follows a `--retention` longer than its default (and `--retention 0` keeps rows too).
 */
function retentionRows(retentionMs: number, given: number | undefined): number {
  if (given === undefined) return retentionMs === 0 ? 0 : Math.max(DEFAULT_RETENTION_ROWS_MS, retentionMs);
  const keepsFilesLonger = given !== 0 && (retentionMs === 0 || given < retentionMs);
  if (keepsFilesLonger) {
    throw new ConfigError(
      GATEWAY_OPTIONS.retentionRows.flag,
      "",
      `${showDuration(given)} is shorter than --retention (${retentionMs === 0 ? "0: files are kept forever" : showDuration(retentionMs)}): ` +
        "a task's record must outlive its files; make it at least as long, or 0 to keep records forever",
    );
  }
  return given;
}

/** `--cors-origin` values, each an origin exactly as a browser sends it (no path, no slash). */
function corsOrigins(values: readonly string[]): string[] {
  const list = values
    .flatMap((value) => value.split(","))
    .map((part) => part.trim())
    .filter(Boolean);
  for (const origin of list) {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== origin) {
      throw new ConfigError(
        "--cors-origin",
        "",
        `"${origin}" is not an origin: write scheme, host and port only, e.g. https://app.example.com`,
      );
    }
  }
  return list;
}

function allowList(entries: readonly string[] | undefined): AllowList | undefined {
  if (entries === undefined) return undefined;
  const parsed = parseAllowList(entries);
  // The option's value type let only a valid list through.
  return "list" in parsed ? parsed.list : undefined;
}
