import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import type { HeygemInstanceConfig, HeygemSettings } from "../engines/heygem/heygem-settings.js";
import { ConfigError } from "../errors.js";
import { int } from "./gateway-config.js";

export const HEYGEM_DEFAULTS = Object.freeze({
  pollIntervalMs: 2_000,
  stallTimeoutMs: 10 * 60_000,
  timeoutBaseMs: 120_000,
  // Users report 2–7 s of compute per second of output (heygem-contract.md, "Inputs and speed").
  timeoutPerAudioSecondMs: 30_000,
  busyTimeoutMs: 10 * 60_000,
  busyBackoffMs: 5_000,
  requestTimeoutMs: 30_000,
  probeIntervalMs: 10_000,
  unreachableGraceMs: 30_000,
});

type TimerKey = Exclude<keyof HeygemSettings, "instances">;

/** Each timer: its key in worker.json's `heygem` section, its flag, and its least value. */
const TIMERS: readonly { key: TimerKey; file: string; flag: string; min: number }[] = [
  { key: "pollIntervalMs", file: "poll_interval_ms", flag: "heygem-poll-interval", min: 10 },
  { key: "stallTimeoutMs", file: "stall_timeout_ms", flag: "heygem-stall-timeout", min: 1 },
  { key: "timeoutBaseMs", file: "timeout_base_ms", flag: "heygem-timeout-base", min: 0 },
  {
    key: "timeoutPerAudioSecondMs",
    file: "timeout_per_audio_second_ms",
    flag: "heygem-timeout-per-second",
    min: 0,
  },
  { key: "busyTimeoutMs", file: "busy_timeout_ms", flag: "heygem-busy-timeout", min: 0 },
  { key: "busyBackoffMs", file: "busy_backoff_ms", flag: "heygem-busy-backoff", min: 1 },
  { key: "requestTimeoutMs", file: "request_timeout_ms", flag: "heygem-request-timeout", min: 10 },
  { key: "probeIntervalMs", file: "probe_interval_ms", flag: "heygem-probe-interval", min: 10 },
  { key: "unreachableGraceMs", file: "unreachable_grace_ms", flag: "heygem-unreachable-grace", min: 0 },
];

const ms = (description: string) => Type.Optional(Type.Integer({ minimum: 0, description }));

/** The `heygem` section of worker.json. */
export const HeygemSection = Type.Object(
  {
    instances: Type.Array(
      Type.Object(
        {
          url: Type.String({
            pattern: "^https?://",
            description: "The container's API, e.g. http://127.0.0.1:8383",
          }),
          data_dir: Type.String({ minLength: 1, description: "The host folder mapped to /code/data" }),
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
        },
        { additionalProperties: false },
      ),
    ),
    poll_interval_ms: ms("between two queries of a running task (default 2000)"),
    stall_timeout_ms: ms("no progress for this long fails the task (default 600000)"),
    timeout_base_ms: ms("overall limit: this base… (default 120000)"),
    timeout_per_audio_second_ms: ms("…plus this per second of audio (default 30000)"),
    busy_timeout_ms: ms("how long a job waits while instances answer busy (default 600000)"),
    busy_backoff_ms: ms("first wait after a busy answer, doubling (default 5000)"),
    request_timeout_ms: ms("bound on one call to a container (default 30000)"),
    probe_interval_ms: ms("how often an idle instance is probed (default 10000)"),
    unreachable_grace_ms: ms("how long a running task's container may not answer (default 30000)"),
  },
  { additionalProperties: false },
);
export type HeygemSection = Static<typeof HeygemSection>;

/** The heygem flags, as commander hands them over (strings), keyed like WorkerFlags. */
export interface HeygemFlags {
  /** Each `URL=DATA_DIR`; one flag may also hold several, separated by commas. */
  heygem?: string[];
  heygemPollInterval?: string;
  heygemStallTimeout?: string;
  heygemTimeoutBase?: string;
  heygemTimeoutPerSecond?: string;
  heygemBusyTimeout?: string;
  heygemBusyBackoff?: string;
  heygemRequestTimeout?: string;
  heygemProbeInterval?: string;
  heygemUnreachableGrace?: string;
}

/** commander's collector for the repeatable `--heygem URL=DATA_DIR`. */
export function collectHeygemFlag(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * The engine's settings from worker.json's `heygem` section (paths relative to the file) and the
 * flags (paths relative to `cwd`); a flag wins over the file, and `--heygem` flags replace the
 * file's instance list. undefined when neither names an instance.
 */
export function resolveHeygemSettings(
  flags: HeygemFlags,
  file: { readonly path: string; readonly section: HeygemSection | undefined } | undefined,
  cwd: string,
): HeygemSettings | undefined {
  const section = file?.section;
  let instances: HeygemInstanceConfig[];
  if (flags.heygem !== undefined && flags.heygem.length > 0) {
    instances = flags.heygem
      .flatMap((value) => value.split(","))
      .map((entry) => entry.trim())
      .filter((entry) => entry !== "")
      .map((entry) => parseInstanceFlag(entry, cwd));
  } else if (file && section) {
    instances = section.instances.map((entry, i) => {
      const field = `heygem.instances[${i}]`;
      return checkInstance(
        { name: entry.name, url: entry.url, dataDir: resolve(dirname(file.path), entry.data_dir) },
        file.path,
        field,
      );
    });
  } else {
    return undefined;
  }
  const names = new Set<string>();
  const urls = new Set<string>();
  instances.forEach((instance, i) => {
    const where = flags.heygem?.length ? "--heygem" : (file?.path ?? "--heygem");
    const field = flags.heygem?.length ? "" : `heygem.instances[${i}]`;
    if (urls.has(instance.url))
      throw new ConfigError(where, field, `instance ${instance.url} is listed twice`);
    if (names.has(instance.name)) {
      throw new ConfigError(where, field, `two instances are named "${instance.name}"`);
    }
    urls.add(instance.url);
    names.add(instance.name);
  });

  const settings: Record<string, unknown> = {
    instances: Object.freeze(instances.map((i) => Object.freeze(i))),
  };
  for (const timer of TIMERS) {
    const flagValue = flags[flagKey(timer.flag)];
    const fileValue = section?.[timer.file as keyof HeygemSection];
    if (flagValue !== undefined && flagValue !== "") {
      settings[timer.key] = int(timer.flag, flagValue, HEYGEM_DEFAULTS[timer.key], timer.min);
    } else if (typeof fileValue === "number") {
      if (fileValue < timer.min) {
        throw new ConfigError(file?.path ?? "", `heygem.${timer.file}`, `expected an integer ≥ ${timer.min}`);
      }
      settings[timer.key] = fileValue;
    } else {
      settings[timer.key] = HEYGEM_DEFAULTS[timer.key];
    }
  }
  return Object.freeze(settings) as unknown as HeygemSettings;
}

/** `heygem-poll-interval` → `heygemPollInterval`, commander's key for the flag. */
function flagKey(flag: string): Exclude<keyof HeygemFlags, "heygem"> {
  return flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()) as Exclude<
    keyof HeygemFlags,
    "heygem"
  >;
}

/** `http://127.0.0.1:8383=/home/me/heygem_data/face2face`: the first `=` ends the URL. */
export function parseInstanceFlag(entry: string, cwd: string): HeygemInstanceConfig {
  const at = entry.indexOf("=");
  if (at <= 0 || at === entry.length - 1) {
    throw new ConfigError(
      "--heygem",
      "",
      `expected URL=DATA_DIR (e.g. http://127.0.0.1:8383=/home/me/heygem_data/face2face), got "${entry}"`,
    );
  }
  return checkInstance(
    { name: undefined, url: entry.slice(0, at), dataDir: resolve(cwd, entry.slice(at + 1)) },
    "--heygem",
    "",
  );
}

function checkInstance(
  raw: { name: string | undefined; url: string; dataDir: string },
  source: string,
  field: string,
): HeygemInstanceConfig {
  let url: URL;
  try {
    url = new URL(raw.url);
  } catch {
    throw new ConfigError(source, join(field, "url"), `not a URL: "${raw.url}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(source, join(field, "url"), `expected an http:// URL, got "${raw.url}"`);
  }
  // Caught here rather than at the first job: a typo in the folder would otherwise look like a
  // wrong volume mapping of a container that is in fact fine.
  if (!existsSync(raw.dataDir) || !statSync(raw.dataDir).isDirectory()) {
    throw new ConfigError(
      source,
      join(field, "data_dir"),
      `folder not found: ${raw.dataDir} (the host folder mapped to the container's /code/data)`,
    );
  }
  return {
    name: raw.name ?? url.host,
    url: `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`,
    dataDir: raw.dataDir,
  };
}

function join(field: string, key: string): string {
  return field === "" ? "" : `${field}.${key}`;
}
