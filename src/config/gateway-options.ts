import { parseAllowList } from "../http/allow-list.js";
import { STANDARD_FIRST_DELAY_MS } from "../http/webhook-retry-schedule.js";
import { parseWebhookSecret, SECRET_FORMAT } from "../http/webhook-signature.js";
import { type OptionTable, option, type ValueType } from "./options.js";
import { PLACEMENT_NAMES } from "./placement-names.js";
import {
  duration,
  httpUrl,
  integer,
  LOG_FORMATS,
  logLevel,
  milliseconds,
  oneOf,
  onOff,
  path,
  postgresUrl,
  repeated,
  text,
} from "./value-types.js";

/** Used when it exists and no --config is given. */
export const DEFAULT_MACHINES_FILE = "config/machines.json";

/** `--callback-secret`: checked at start-up, and never echoed in an error. */
const webhookSecret: ValueType<string> = {
  ...text,
  expected: SECRET_FORMAT,
  secret: true,
  parse: (value) => (parseWebhookSecret(value) ? value : undefined),
  check: (value) => (typeof value === "string" && parseWebhookSecret(value) ? value : undefined),
  show: () => "whsec_…",
};

/** `--callback-allow`: `10.0.0.0/8,hooks.example.com,*.example.org`. */
const callbackDestinations: ValueType<readonly string[]> = {
  expected:
    "a list of host names, *.domains, addresses or CIDRs separated by commas (e.g. 10.0.0.0/8,hooks.example.com)",
  parse: (value) => {
    const entries = value.split(",").map((entry) => entry.trim());
    return entries.every((entry) => entry !== "") && "list" in parseAllowList(entries) ? entries : undefined;
  },
  check: () => undefined,
  show: (value) => value.join(","),
};

/**
 * `multi-heygem gateway`'s options (options.ts), in `--help` order. The README's table under
 * "Configuration" is held to this by test/config/readme-flags.test.ts; each key is the attribute
 * commander derives from the flag.
 */
export const GATEWAY_OPTIONS = {
  host: option({
    flag: "--host",
    value: "<host>",
    env: "HOST",
    type: text,
    default: "0.0.0.0",
    description: "address to listen on",
  }),
  port: option({
    flag: "--port",
    value: "<port>",
    env: "PORT",
    type: integer({ min: 0, max: 65535 }),
    default: 8101,
    description: "port to listen on",
  }),
  config: option({
    flag: "--config",
    value: "<file>",
    env: "CONFIG",
    type: path,
    defaultText: `\`${DEFAULT_MACHINES_FILE}\` if it exists`,
    description: "machines file",
  }),
  dataDir: option({
    flag: "--data-dir",
    value: "<dir>",
    env: "DATA_DIR",
    type: path,
    default: "./data",
    description: "store, uploads and results",
  }),
  blobsDir: option({
    flag: "--blobs-dir",
    value: "<dir>",
    env: "BLOBS_DIR",
    type: path,
    defaultText: "`blobs/` in the data dir",
    description:
      "uploads, results and avatars' files; gateways sharing one PostgreSQL store share this folder (NFS, a shared volume)",
  }),
  store: option({
    flag: "--store",
    value: "<url>",
    env: "STORE",
    type: postgresUrl,
    defaultText: "`DATABASE_URL` if set; else SQLite in the data dir",
    description: "keep tasks in PostgreSQL (postgres://…) instead of SQLite; blobs stay in the data dir",
  }),
  embedded: option({
    flag: "--embedded",
    env: "EMBEDDED",
    type: onOff,
    defaultText: "on when there is no machines file",
    description: "also run a local ffmpeg worker inside the gateway",
  }),
  embeddedConcurrency: option({
    flag: "--embedded-concurrency",
    value: "<n>",
    env: "EMBEDDED_CONCURRENCY",
    type: integer({ min: 1 }),
    default: 1,
    description: "jobs the embedded worker runs at once",
  }),
  healthInterval: option({
    flag: "--health-interval",
    value: "<ms>",
    env: "HEALTH_INTERVAL",
    type: milliseconds({ min: 10 }),
    default: 1000,
    description: "how often each machine is probed",
  }),
  probeTimeout: option({
    flag: "--probe-timeout",
    value: "<ms>",
    env: "PROBE_TIMEOUT",
    type: milliseconds({ min: 10 }),
    default: 2000,
    description: "a health probe slower than this fails",
  }),
  failureThreshold: option({
    flag: "--failure-threshold",
    value: "<n>",
    env: "FAILURE_THRESHOLD",
    type: integer({ min: 1 }),
    default: 2,
    description: "failed probes in a row that take a machine out",
  }),
  placement: option({
    flag: "--placement",
    value: "<policy>",
    env: "PLACEMENT",
    type: oneOf(PLACEMENT_NAMES),
    default: "earliest-finish",
    description: "how a task picks its machine",
  }),
  taskTimeout: option({
    flag: "--task-timeout",
    value: "<ms>",
    env: "TASK_TIMEOUT",
    type: milliseconds({ min: 0 }),
    default: 6 * 3_600_000,
    description: "fail tasks not finished this long after creation; 0 = never",
  }),
  pollWait: option({
    flag: "--poll-wait",
    value: "<ms>",
    env: "POLL_WAIT",
    type: milliseconds({ min: 0 }),
    default: 20_000,
    description: "long-poll wait when following a job",
  }),
  requestTimeout: option({
    flag: "--request-timeout",
    value: "<ms>",
    env: "REQUEST_TIMEOUT",
    type: milliseconds({ min: 10 }),
    default: 30_000,
    description: "timeout of a worker call that should answer at once",
  }),
  machineGrace: option({
    flag: "--machine-grace",
    value: "<ms>",
    env: "MACHINE_GRACE",
    type: milliseconds({ min: 0 }),
    default: 5_000,
    description: "how long a silent machine keeps its running tasks",
  }),
  shutdownGrace: option({
    flag: "--shutdown-grace",
    value: "<duration>",
    env: "SHUTDOWN_GRACE",
    type: duration({ minMs: 0 }),
    default: 60_000,
    description:
      "on SIGTERM, how long uploads, downloads and the embedded worker's jobs in flight may take before the gateway exits",
  }),
  syncTimeout: option({
    flag: "--sync-timeout",
    value: "<ms>",
    env: "SYNC_TIMEOUT",
    type: milliseconds({ min: 1 }),
    default: 3_600_000,
    description: "longest wait of POST /tasks/sync",
  }),
  maxUploadMb: option({
    flag: "--max-upload-mb",
    value: "<mb>",
    env: "MAX_UPLOAD_MB",
    type: integer({ min: 1 }),
    default: 2048,
    description: "largest accepted file per field, in MiB",
  }),
  maxPending: option({
    flag: "--max-pending",
    value: "<n>",
    env: "MAX_PENDING",
    type: integer({ min: 1 }),
    default: 10_000,
    description: "tasks that may wait for a machine; beyond it new tasks answer 429",
  }),
  maxAudioSeconds: option({
    flag: "--max-audio-seconds",
    value: "<s>",
    env: "MAX_AUDIO_SECONDS",
    type: integer({ min: 1 }),
    default: 1800,
    description: "longest audio accepted, in seconds",
  }),
  minFreeDisk: option({
    flag: "--min-free-disk",
    value: "<mb>",
    env: "MIN_FREE_DISK",
    type: integer({ min: 0 }),
    default: 1024,
    description: "MiB to keep free under the data dir; uploads answer 507 below it; 0 = off",
  }),
  headerTimeout: option({
    flag: "--header-timeout",
    value: "<ms>",
    env: "HEADER_TIMEOUT",
    type: milliseconds({ min: 100 }),
    default: 30_000,
    description: "a request's headers must arrive within this",
  }),
  uploadIdleTimeout: option({
    flag: "--upload-idle-timeout",
    value: "<ms>",
    env: "UPLOAD_IDLE_TIMEOUT",
    type: milliseconds({ min: 100 }),
    default: 60_000,
    description: "an upload that sends nothing for this long is cut off",
  }),
  uploadTimeout: option({
    flag: "--upload-timeout",
    value: "<ms>",
    env: "UPLOAD_TIMEOUT",
    type: milliseconds({ min: 100 }),
    default: 3_600_000,
    description: "a whole request, upload included, must arrive within this",
  }),
  retention: option({
    flag: "--retention",
    value: "<duration>",
    env: "RETENTION",
    type: duration({ minMs: 0 }),
    default: 7 * 86_400_000,
    description:
      "delete a finished task's inputs and result this long after it ended (7d, 12h, 30m); 0 = never",
  }),
  retentionRows: option({
    flag: "--retention-rows",
    value: "<duration>",
    env: "RETENTION_ROWS",
    type: duration({ minMs: 0 }),
    defaultText: "`30d` or --retention if longer",
    description:
      "delete a finished task's record (events, attempts, callbacks) this long after it ended; 0 = never",
  }),
  maxAttempts: option({
    flag: "--max-attempts",
    value: "<n>",
    env: "MAX_ATTEMPTS",
    type: integer({ min: 1 }),
    default: 3,
    description: "machines a task may try before it fails",
  }),
  callbackTries: option({
    flag: "--callback-tries",
    value: "<n>",
    env: "CALLBACK_TRIES",
    type: integer({ min: 1 }),
    default: 8,
    description: "tries of one callback delivery before giving up",
  }),
  callbackRetry: option({
    flag: "--callback-retry",
    value: "<ms>",
    env: "CALLBACK_RETRY",
    type: milliseconds({ min: 1 }),
    default: STANDARD_FIRST_DELAY_MS,
    description: "first callback retry delay; the Standard Webhooks schedule scales with it",
  }),
  callbackTimeout: option({
    flag: "--callback-timeout",
    value: "<ms>",
    env: "CALLBACK_TIMEOUT",
    type: milliseconds({ min: 1 }),
    default: 10_000,
    description: "deadline of one callback try, connecting to reading the answer",
  }),
  callbackSecret: option({
    flag: "--callback-secret",
    value: "<whsec_…>",
    env: "CALLBACK_SECRET",
    type: webhookSecret,
    description: "sign callbacks (Standard Webhooks) with this secret",
  }),
  callbackAllow: option({
    flag: "--callback-allow",
    value: "<list>",
    env: "CALLBACK_ALLOW",
    type: callbackDestinations,
    defaultText: "all but the refused addresses",
    description: "hosts, *.domains and CIDRs callbacks may go to",
  }),
  publicUrl: option({
    flag: "--public-url",
    value: "<url>",
    env: "PUBLIC_URL",
    type: httpUrl,
    defaultText: "the listening address",
    description: "the gateway's address as clients reach it, for result_url in callbacks",
  }),
  apiKeys: option({
    flag: "--api-keys",
    value: "<file>",
    env: "API_KEYS",
    type: path,
    defaultText: "none: the API is open",
    description: "API keys file (names, roles, SHA-256 of each key; `multi-heygem keys add` writes it)",
  }),
  corsOrigin: option({
    flag: "--cors-origin",
    value: "<origin>",
    env: "CORS_ORIGIN",
    type: repeated,
    defaultText: "none: no CORS",
    description:
      "web origin allowed to call the API from a browser, e.g. https://app.example.com; repeat, or separate with commas",
  }),
  workerToken: option({
    flag: "--worker-token",
    value: "<token>",
    env: "WORKER_TOKEN",
    type: text,
    defaultText: "the machines file's `worker_token`",
    description: "shared secret sent to worker agents",
  }),
  logLevel: option({
    flag: "--log-level",
    value: "<level>",
    env: "LOG_LEVEL",
    type: logLevel,
    default: "info",
    description: "pino level",
  }),
  logFormat: option({
    flag: "--log-format",
    value: "<format>",
    env: "LOG_FORMAT",
    type: oneOf(LOG_FORMATS),
    defaultText: "json (pretty on a terminal)",
    description: "json lines or pretty lines, both with ISO-8601 UTC times",
  }),
} satisfies OptionTable;
