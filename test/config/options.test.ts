import { join } from "node:path";
import { Option } from "commander";
import { levels, pino } from "pino";
import { describe, expect, it } from "vitest";
import { GATEWAY_OPTIONS } from "../../src/config/gateway-options.js";
import {
  fileProperties,
  helpText,
  type OptionTable,
  option,
  readSettings,
  shownDefault,
} from "../../src/config/options.js";
import {
  duration,
  integer,
  LOG_LEVELS,
  milliseconds,
  oneOf,
  path,
  text,
} from "../../src/config/value-types.js";
import { WORKER_OPTIONS } from "../../src/config/worker-options.js";
import { ConfigError } from "../../src/errors.js";

const TABLES: [string, OptionTable][] = [
  ["gateway", GATEWAY_OPTIONS],
  ["worker", WORKER_OPTIONS],
];

const TRY = {
  port: option({
    flag: "--port",
    value: "<port>",
    env: "PORT",
    type: integer({ min: 0, max: 65535 }),
    default: 8000,
    file: "port",
    description: "",
  }),
  grace: option({
    flag: "--grace",
    value: "<ms>",
    env: "GRACE",
    type: milliseconds({ min: 10 }),
    default: 600_000,
    file: "timers.grace_ms",
    description: "wait",
  }),
  level: option({
    flag: "--level",
    value: "<level>",
    env: "LEVEL",
    type: oneOf(["low", "high"]),
    default: "low",
    description: "levels",
  }),
  dir: option({
    flag: "--dir",
    value: "<dir>",
    env: "DIR",
    type: path,
    default: "./data",
    file: "dir",
    description: "",
  }),
  name: option({ flag: "--name", value: "<name>", env: "NAME", type: text, description: "" }),
} satisfies OptionTable;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("the options tables", () => {
  it.each(TABLES)("%s: each key is the attribute commander stores the flag's value under", (_, table) => {
    for (const [key, spec] of Object.entries(table)) {
      const flags = spec.value ? `${spec.flag} ${spec.value}` : spec.flag;
      expect(new Option(flags).attributeName()).toBe(key);
    }
  });

  it.each(TABLES)("%s: flags and environment variables are unique", (_, table) => {
    const specs = Object.values(table);
    expect(new Set(specs.map((s) => s.flag)).size).toBe(specs.length);
    expect(new Set(specs.map((s) => s.env)).size).toBe(specs.length);
  });

  it.each(TABLES)("%s: every default fits its own type", (_, table) => {
    for (const spec of Object.values(table)) {
      if (spec.default !== undefined) expect(spec.type.check(spec.default), spec.flag).toEqual(spec.default);
    }
  });

  it("offers exactly the log levels pino knows", () => {
    for (const level of LOG_LEVELS) expect(() => pino({ level }), level).not.toThrow();
    const known = [...Object.keys(levels.values), "silent"];
    expect([...LOG_LEVELS].sort()).toEqual(known.sort());
  });

  it("lists worker.json's keys, each under its section", () => {
    expect(Object.keys(fileProperties(WORKER_OPTIONS))).toEqual([
      "host",
      "port",
      "engine",
      "data_dir",
      "max_concurrent",
      "token",
      "result_retention_hours",
      "shutdown_grace",
      "cache_max_gb",
      "log_level",
      "log_format",
    ]);
    expect(Object.keys(fileProperties(WORKER_OPTIONS, "heygem"))).toContain("poll_interval_ms");
    expect(Object.keys(fileProperties(TRY, "timers"))).toEqual(["grace_ms"]);
  });
});

describe("readSettings", () => {
  const cwd = "/work/here";
  const file = {
    path: "/etc/mh/worker.json",
    values: { port: 9000, dir: "cache", timers: { grace_ms: 50 } },
  };

  it("takes a flag over the file, the file over the default", () => {
    expect(readSettings(TRY, {}, { cwd })).toEqual({
      port: 8000,
      grace: 600_000,
      level: "low",
      dir: join(cwd, "data"),
      name: undefined,
    });
    expect(readSettings(TRY, {}, { cwd, file })).toMatchObject({ port: 9000, grace: 50 });
    expect(readSettings(TRY, { port: "9100", level: "high" }, { cwd, file })).toMatchObject({
      port: 9100,
      grace: 50,
      level: "high",
    });
  });

  it("counts an empty value as not given (an empty environment variable)", () => {
    expect(readSettings(TRY, { port: "", name: " " }, { cwd, file })).toMatchObject({
      port: 9000,
      name: undefined,
    });
  });

  it("resolves a path from where it was written", () => {
    expect(readSettings(TRY, {}, { cwd, file }).dir).toBe("/etc/mh/cache");
    expect(readSettings(TRY, { dir: "mine" }, { cwd, file }).dir).toBe(join(cwd, "mine"));
  });

  it("names the flag, the value and what is allowed", () => {
    expect(configError(() => readSettings(TRY, { port: "80x" }, { cwd })).message).toBe(
      '--port: "80x" is not an integer from 0 to 65535',
    );
    expect(configError(() => readSettings(TRY, { port: "-1" }, { cwd })).message).toBe(
      '--port: "-1" is not an integer from 0 to 65535',
    );
    expect(configError(() => readSettings(TRY, { grace: "2.5" }, { cwd })).message).toBe(
      '--grace: "2.5" is not an integer ≥ 10',
    );
    expect(configError(() => readSettings(TRY, { level: "loud" }, { cwd })).message).toBe(
      '--level: "loud" is not one of low, high',
    );
  });

  it("names the file and the key of a bad value in the file", () => {
    const bad = { ...file, values: { timers: { grace_ms: 5 } } };
    const err = configError(() => readSettings(TRY, {}, { cwd, file: bad }));
    expect(err).toMatchObject({ source: "/etc/mh/worker.json", fieldPath: "timers.grace_ms" });
    expect(err.message).toBe("/etc/mh/worker.json: timers.grace_ms: 5 is not an integer ≥ 10");
  });
});

describe("how a default is shown", () => {
  it("in the README and in --help, from the same table", () => {
    expect(shownDefault(TRY.port)).toBe("`8000`");
    expect(shownDefault(TRY.grace)).toBe("`600000` ms (10 min)");
    expect(shownDefault(TRY.name)).toBe("");
    expect(helpText(TRY.grace)).toBe("wait (default: 600000 ms = 10 min)");
    expect(helpText(TRY.level)).toBe("levels: low, high (default: low)");
    expect(shownDefault(GATEWAY_OPTIONS.taskTimeout)).toBe("`21600000` ms (6 h)");
  });
});

describe("duration", () => {
  const type = duration({ minMs: 0 });

  it("reads a number with its unit, or 0, and shows it back; a number given as one is milliseconds", () => {
    expect(["500ms", "90s", "10m", "1.5h", "7d", "0"].map((t) => type.parse(t))).toEqual([
      500, 90_000, 600_000, 5_400_000, 604_800_000, 0,
    ]);
    expect(type.check(250)).toBe(250);
    expect([600_000, 90_000, 1_500, 86_400_000].map((ms) => type.show(ms))).toEqual([
      "10m",
      "90s",
      "1500ms",
      "1d",
    ]);
    expect(type.check("30s")).toBe(30_000);
  });

  it("refuses anything else", () => {
    // A bare number is refused: `--retention 7` must not quietly mean seven milliseconds.
    for (const bad of ["", "10 minutes", "-1s", "1w", "s", "250", "7"])
      expect(type.parse(bad), bad).toBeUndefined();
    expect(duration({ minMs: 1000 }).parse("500ms")).toBeUndefined();
  });
});
