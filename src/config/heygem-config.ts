import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import type { HeygemInstanceConfig, HeygemSettings } from "../engines/heygem/heygem-settings.js";
import { ConfigError } from "../errors.js";
import { fileProperties, type Settings } from "./options.js";
import { HEYGEM_OPTIONS } from "./worker-options.js";

type TimerKey = Exclude<keyof HeygemSettings, "instances">;

/** Each timer's option (worker-options.ts), which holds its flag, worker.json key, limit and default. */
const TIMER_OPTIONS = {
  pollIntervalMs: "heygemPollInterval",
  stallTimeoutMs: "heygemStallTimeout",
  timeoutBaseMs: "heygemTimeoutBase",
  timeoutPerAudioSecondMs: "heygemTimeoutPerSecond",
  busyTimeoutMs: "heygemBusyTimeout",
  busyBackoffMs: "heygemBusyBackoff",
  requestTimeoutMs: "heygemRequestTimeout",
  probeIntervalMs: "heygemProbeInterval",
  unreachableGraceMs: "heygemUnreachableGrace",
} as const satisfies Record<TimerKey, Exclude<keyof typeof HEYGEM_OPTIONS, "heygem">>;

function timers(value: (option: Exclude<keyof typeof HEYGEM_OPTIONS, "heygem">) => number) {
  const entries = Object.entries(TIMER_OPTIONS).map(([key, option]) => [key, value(option)]);
  return Object.fromEntries(entries) as Record<TimerKey, number>;
}

export const HEYGEM_DEFAULTS: Readonly<Record<TimerKey, number>> = Object.freeze(
  timers((option) => HEYGEM_OPTIONS[option].default),
);

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
    ...fileProperties(HEYGEM_OPTIONS, "heygem"),
  },
  { additionalProperties: false },
);
export type HeygemSection = Static<typeof HeygemSection>;

/**
 * The engine's settings from the options read by `readSettings` (timers: flag, then worker.json,
 * then default) and the instances: `--heygem` flags (paths relative to `cwd`) replace worker.json's
 * `heygem.instances` (paths relative to the file). undefined when neither names an instance.
 */
export function resolveHeygemSettings(
  options: Settings<typeof HEYGEM_OPTIONS>,
  file: { readonly path: string; readonly section: HeygemSection | undefined } | undefined,
  cwd: string,
): HeygemSettings | undefined {
  const section = file?.section;
  const flagged = options.heygem?.length ? options.heygem : undefined;
  const fromFlags = flagged !== undefined;
  let instances: HeygemInstanceConfig[];
  if (flagged) {
    instances = flagged
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
    const where = fromFlags ? "--heygem" : (file?.path ?? "--heygem");
    const field = fromFlags ? "" : `heygem.instances[${i}]`;
    if (urls.has(instance.url))
      throw new ConfigError(where, field, `instance ${instance.url} is listed twice`);
    if (names.has(instance.name)) {
      throw new ConfigError(where, field, `two instances are named "${instance.name}"`);
    }
    urls.add(instance.url);
    names.add(instance.name);
  });
  return Object.freeze({
    instances: Object.freeze(instances.map((i) => Object.freeze(i))),
    ...timers((option) => options[option]),
  });
}

/** `http://127.0.0.1:8383=/home/me/heygem_data/face2face`: the first `=` ends the URL. */
export function parseInstanceFlag(
  entry: string,
  cwd: string,
  flag = "--heygem",
  example = "http://127.0.0.1:8383=/home/me/heygem_data/face2face",
): HeygemInstanceConfig {
  const at = entry.indexOf("=");
  if (at <= 0 || at === entry.length - 1) {
    throw new ConfigError(flag, "", `expected URL=DATA_DIR (e.g. ${example}), got "${entry}"`);
  }
  return checkInstance(
    { name: undefined, url: entry.slice(0, at), dataDir: resolve(cwd, entry.slice(at + 1)) },
    flag,
    "",
  );
}

/** A container's URL and host folder, checked; shared by the heygem and tts instances. */
export function checkInstance(
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
