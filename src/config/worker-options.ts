import { SIMULATE_DEFAULTS } from "../engines/simulate-engine.js";
import { type OptionTable, option } from "./options.js";
import {
  decimal,
  duration,
  exitCodes,
  integer,
  LOG_FORMATS,
  logLevel,
  milliseconds,
  oneOf,
  onOff,
  path,
  repeated,
  text,
} from "./value-types.js";

/**
 * `multi-heygem worker`'s options (options.ts), in `--help` order, in parts by engine. The README's
 * tables under "Running a worker on a GPU machine" and "HeyGem machines" are held to these by
 * test/config/readme-flags.test.ts; each key is the attribute commander derives from the flag.
 */

const AGENT_OPTIONS = {
  host: option({
    flag: "--host",
    value: "<host>",
    env: "WORKER_HOST",
    type: text,
    default: "0.0.0.0",
    file: "host",
    description: "address to listen on",
  }),
  port: option({
    flag: "--port",
    value: "<port>",
    env: "WORKER_PORT",
    type: integer({ min: 0, max: 65535 }),
    default: 8000,
    file: "port",
    description: "port to listen on",
  }),
  // Checked against the engine registry by resolveWorkerConfig, which is handed its names.
  engine: option({
    flag: "--engine",
    value: "<name>",
    env: "ENGINE",
    type: text,
    default: "ffmpeg",
    file: "engine",
    description: "the engine in front of which the agent runs",
  }),
  dataDir: option({
    flag: "--data-dir",
    value: "<dir>",
    env: "WORKER_DATA_DIR",
    type: path,
    default: "./worker-data",
    file: "data_dir",
    description: "blob cache, job records and results",
  }),
  maxConcurrent: option({
    flag: "--max-concurrent",
    value: "<n>",
    env: "MAX_CONCURRENT",
    type: integer({ min: 1 }),
    default: 1,
    file: "max_concurrent",
    description: "jobs run at once",
  }),
  token: option({
    flag: "--token",
    value: "<token>",
    env: "WORKER_TOKEN",
    type: text,
    file: "token",
    description: "shared secret the gateway must send",
  }),
  // Flag only, never in worker.json: running open to the network is decided on each start.
  insecureNoToken: option({
    flag: "--insecure-no-token",
    env: "INSECURE_NO_TOKEN",
    type: onOff,
    default: false,
    description:
      "start without --token even on a network address (anyone who reaches it can run and delete jobs)",
  }),
  resultRetentionHours: option({
    flag: "--result-retention-hours",
    value: "<h>",
    env: "RESULT_RETENTION_HOURS",
    type: integer({ min: 0 }),
    default: 24,
    file: "result_retention_hours",
    description: "keep finished jobs this long",
  }),
  shutdownGrace: option({
    flag: "--shutdown-grace",
    value: "<duration>",
    env: "SHUTDOWN_GRACE",
    type: duration({ minMs: 0 }),
    default: 10 * 60_000,
    file: "shutdown_grace",
    description:
      "on SIGTERM, how long running jobs may go on before the agent stops them and exits (it takes no new job meanwhile)",
  }),
  cacheMaxGb: option({
    flag: "--cache-max-gb",
    value: "<gb>",
    env: "CACHE_MAX_GB",
    type: decimal({ min: 0 }),
    defaultText: "25 % of the data dir's disk",
    file: "cache_max_gb",
    description:
      "keep at most this many GB (10^9 bytes) of uploaded inputs, least recently used going first; 0 = no limit",
  }),
} satisfies OptionTable;

/** engine-settings.ts turns these into the command engine's settings. */
export const COMMAND_OPTIONS = {
  command: option({
    flag: "--command",
    value: "<template>",
    env: "COMMAND",
    type: text,
    description:
      "command engine: the command to run per job, e.g. 'python infer.py --audio {audio} --video {video} --out {output}'",
  }),
  commandTimeout: option({
    flag: "--command-timeout",
    value: "<s>",
    env: "COMMAND_TIMEOUT",
    type: decimal({ min: 0 }),
    defaultText: "none",
    description: "command engine: kill a job's command after this many seconds; 0 = never",
  }),
  commandInputExitCodes: option({
    flag: "--command-input-exit-codes",
    value: "<codes>",
    env: "COMMAND_INPUT_EXIT_CODES",
    type: exitCodes,
    description: "command engine: exit codes meaning the input is at fault, e.g. 2,3 (no retry elsewhere)",
  }),
  commandCwd: option({
    flag: "--command-cwd",
    value: "<dir>",
    env: "COMMAND_CWD",
    type: path,
    defaultText: "the job's work dir",
    description: "command engine: run the command here",
  }),
} satisfies OptionTable;

export const SIMULATE_OPTIONS = {
  speedFactor: option({
    flag: "--speed-factor",
    value: "<x>",
    env: "SPEED_FACTOR",
    type: decimal({ min: 0 }),
    default: SIMULATE_DEFAULTS.speedFactor,
    description: "simulate engine: seconds of work per second of audio",
  }),
  timeScale: option({
    flag: "--time-scale",
    value: "<x>",
    env: "TIME_SCALE",
    type: decimal({ min: 0 }),
    default: SIMULATE_DEFAULTS.timeScale,
    description: "simulate engine: multiplies every wait",
  }),
} satisfies OptionTable;

/** heygem-config.ts turns these into the heygem engine's settings (README, "HeyGem machines"). */
export const HEYGEM_OPTIONS = {
  // worker.json's instances are objects, read by heygem-config.ts (the type has no `json`).
  heygem: option({
    flag: "--heygem",
    value: "<url=dir>",
    env: "HEYGEM",
    type: repeated,
    file: "heygem.instances",
    description:
      "heygem engine: one container, e.g. http://127.0.0.1:8383=/home/me/heygem_data/face2face (its URL = " +
      "the host folder mapped to /code/data); repeat per container, or separate with commas",
  }),
  heygemPollInterval: option({
    flag: "--heygem-poll-interval",
    value: "<ms>",
    env: "HEYGEM_POLL_INTERVAL",
    type: milliseconds({ min: 10 }),
    default: 2_000,
    file: "heygem.poll_interval_ms",
    description: "heygem: between queries of a task",
  }),
  heygemStallTimeout: option({
    flag: "--heygem-stall-timeout",
    value: "<ms>",
    env: "HEYGEM_STALL_TIMEOUT",
    type: milliseconds({ min: 1 }),
    default: 10 * 60_000,
    file: "heygem.stall_timeout_ms",
    description: "heygem: fail a task without progress this long",
  }),
  heygemTimeoutBase: option({
    flag: "--heygem-timeout-base",
    value: "<ms>",
    env: "HEYGEM_TIMEOUT_BASE",
    type: milliseconds({ min: 0 }),
    default: 120_000,
    file: "heygem.timeout_base_ms",
    description: "heygem: overall limit of a task, base",
  }),
  // Users report 2–7 s of compute per second of output (heygem-contract.md, "Inputs and speed").
  heygemTimeoutPerSecond: option({
    flag: "--heygem-timeout-per-second",
    value: "<ms>",
    env: "HEYGEM_TIMEOUT_PER_SECOND",
    type: milliseconds({ min: 0 }),
    default: 30_000,
    file: "heygem.timeout_per_audio_second_ms",
    description: "heygem: overall limit, added per second of audio",
  }),
  heygemBusyTimeout: option({
    flag: "--heygem-busy-timeout",
    value: "<ms>",
    env: "HEYGEM_BUSY_TIMEOUT",
    type: milliseconds({ min: 0 }),
    default: 10 * 60_000,
    file: "heygem.busy_timeout_ms",
    description: "heygem: how long a job waits while containers are busy",
  }),
  heygemBusyBackoff: option({
    flag: "--heygem-busy-backoff",
    value: "<ms>",
    env: "HEYGEM_BUSY_BACKOFF",
    type: milliseconds({ min: 1 }),
    default: 5_000,
    file: "heygem.busy_backoff_ms",
    description: "heygem: first wait after a busy answer, doubling",
  }),
  heygemRequestTimeout: option({
    flag: "--heygem-request-timeout",
    value: "<ms>",
    env: "HEYGEM_REQUEST_TIMEOUT",
    type: milliseconds({ min: 10 }),
    default: 30_000,
    file: "heygem.request_timeout_ms",
    description: "heygem: bound on one call to a container",
  }),
  heygemProbeInterval: option({
    flag: "--heygem-probe-interval",
    value: "<ms>",
    env: "HEYGEM_PROBE_INTERVAL",
    type: milliseconds({ min: 10 }),
    default: 10_000,
    file: "heygem.probe_interval_ms",
    description: "heygem: how often an idle container is probed",
  }),
  heygemUnreachableGrace: option({
    flag: "--heygem-unreachable-grace",
    value: "<ms>",
    env: "HEYGEM_UNREACHABLE_GRACE",
    type: milliseconds({ min: 0 }),
    default: 30_000,
    file: "heygem.unreachable_grace_ms",
    description: "heygem: how long a running task's container may not answer",
  }),
} satisfies OptionTable;

export const WORKER_OPTIONS = {
  ...AGENT_OPTIONS,
  ...COMMAND_OPTIONS,
  ...SIMULATE_OPTIONS,
  ...HEYGEM_OPTIONS,
  config: option({
    flag: "--config",
    value: "<file>",
    env: "WORKER_CONFIG",
    type: path,
    description: "worker settings file (JSON, e.g. worker.json); flags win over it",
  }),
  logLevel: option({
    flag: "--log-level",
    value: "<level>",
    env: "LOG_LEVEL",
    type: logLevel,
    default: "info",
    file: "log_level",
    description: "pino level",
  }),
  logFormat: option({
    flag: "--log-format",
    value: "<format>",
    env: "LOG_FORMAT",
    type: oneOf(LOG_FORMATS),
    defaultText: "json (pretty on a terminal)",
    file: "log_format",
    description: "json lines or pretty lines, both with ISO-8601 UTC times",
  }),
} satisfies OptionTable;
