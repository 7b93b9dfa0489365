import { Type } from "@sinclair/typebox";
import type { ValueType } from "./options.js";

/** The kinds of values the options take (options.ts), each with its check and its wording. */

export function integer(limits: { min: number; max?: number }): ValueType<number> {
  const { min, max } = limits;
  const fits = (n: number) => Number.isInteger(n) && n >= min && (max === undefined || n <= max);
  return {
    expected: max === undefined ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`,
    json: Type.Integer(),
    parse: (text) => {
      const n = Number(text);
      return fits(n) ? n : undefined;
    },
    check: (value) => (typeof value === "number" && fits(value) ? value : undefined),
    show: String,
  };
}

/** Whole milliseconds; a default of a minute or more is glossed in minutes or hours. */
export function milliseconds(limits: { min: number }): ValueType<number> {
  return { ...integer(limits), unit: "ms", note: humanDuration };
}

function humanDuration(ms: number): string | undefined {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return undefined;
}

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * A span written the way operators say it (`30s`, `10m`, `12h`, `7d`), held in milliseconds; `0`
 * is zero ("never" for the options that take it). Text without a unit is refused, so
 * `--retention 7` cannot silently mean seven milliseconds; a number (a default, a worker.json
 * value) is milliseconds already.
 */
export function duration(limits: { minMs: number }): ValueType<number> {
  const fits = (ms: number) => Number.isSafeInteger(ms) && ms >= limits.minMs;
  const parse = (value: string) => {
    const trimmed = value.trim();
    if (trimmed === "0") return fits(0) ? 0 : undefined;
    const match = DURATION.exec(trimmed);
    if (!match) return undefined;
    const ms = Math.round(Number(match[1]) * DURATION_UNITS[match[2] as keyof typeof DURATION_UNITS]);
    return fits(ms) ? ms : undefined;
  };
  return {
    expected: "a duration such as 45s, 10m, 12h or 7d, or 0",
    json: Type.Union([Type.String(), Type.Number()]),
    parse,
    check: (value) =>
      typeof value === "string" ? parse(value) : typeof value === "number" && fits(value) ? value : undefined,
    show: showDuration,
  };
}

/** The largest whole unit that writes `ms` exactly: 604800000 → `7d`. */
export function showDuration(ms: number): string {
  if (ms === 0) return "0";
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms % DURATION_UNITS[unit] === 0) return `${ms / DURATION_UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

export function decimal(limits: { min: number }): ValueType<number> {
  const fits = (n: number) => Number.isFinite(n) && n >= limits.min;
  return {
    expected: `a number ≥ ${limits.min}`,
    json: Type.Number(),
    parse: (text) => {
      const n = Number(text);
      return fits(n) ? n : undefined;
    },
    check: (value) => (typeof value === "number" && fits(value) ? value : undefined),
    show: String,
  };
}

export function oneOf<const T extends string>(choices: readonly T[]): ValueType<T> {
  const known = (value: unknown) => choices.find((choice) => choice === value);
  return {
    expected: `one of ${choices.join(", ")}`,
    choices,
    json: Type.String(),
    parse: known,
    check: known,
    show: String,
  };
}

export const text: ValueType<string> = {
  expected: "a text",
  json: Type.String(),
  parse: (value) => value,
  check: (value) => (typeof value === "string" ? value : undefined),
  show: String,
};

/** A file or folder; read as given, resolved where it was written (options.ts). */
export const path: ValueType<string> = { ...text, expected: "a path", isPath: true };

/**
 * A PostgreSQL connection URL (`--store`): `postgres://` or `postgresql://`, as libpq and
 * node-postgres read it. It may hold a password, so it is never repeated in a message, and shown
 * without it.
 */
export const postgresUrl: ValueType<string> = {
  expected: "a PostgreSQL URL such as postgres://user:password@host:5432/database",
  json: Type.String(),
  secret: true,
  parse: (value) => {
    let url: URL;
    try {
      url = new URL(value.trim());
    } catch {
      return undefined;
    }
    return url.protocol === "postgres:" || url.protocol === "postgresql:" ? value.trim() : undefined;
  },
  check: (value) => (typeof value === "string" ? postgresUrl.parse(value) : undefined),
  show: (value) => {
    const url = new URL(value);
    if (url.password) url.password = "***";
    return url.toString();
  },
};

/** An absolute http(s) URL without query or fragment, kept without a trailing slash. */
export const httpUrl: ValueType<string> = {
  expected: "an http:// or https:// URL without query or fragment (e.g. https://lipsync.example.com)",
  json: Type.String(),
  parse: (value) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return undefined;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
    if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") return undefined;
    return url.href.replace(/\/+$/, "");
  },
  check: (value) => (typeof value === "string" ? httpUrl.parse(value) : undefined),
  show: String,
};

/** A switch: commander hands over `true` when it is given. */
export const onOff: ValueType<boolean> = {
  expected: "on or off",
  parse: () => true,
  check: (value) => (typeof value === "boolean" ? value : undefined),
  show: (value) => (value ? "on" : "off"),
};

/** A flag that may be repeated; commander collects the values in order (`collect`). */
export const repeated: ValueType<readonly string[]> = {
  expected: "a list of texts",
  parse: (value) => [value],
  check: (value) =>
    Array.isArray(value) && value.every((item) => typeof item === "string") ? value : undefined,
  show: (value) => value.join(", "),
};

/** commander's collector for a repeated flag. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Process exit codes separated by commas, e.g. "2,3". */
export const exitCodes: ValueType<readonly number[]> = {
  expected: "a list of exit codes 1–255 separated by commas (e.g. 2,3)",
  parse: (value) => {
    const codes = value.split(",").map((part) => (part.trim() === "" ? Number.NaN : Number(part)));
    return codes.every((n) => Number.isInteger(n) && n >= 1 && n <= 255) ? codes : undefined;
  },
  check: () => undefined,
  show: (value) => value.join(","),
};

/** pino's levels, and `silent`; pino throws on any other name, so it is checked here first. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const logLevel = oneOf(LOG_LEVELS);
export const LOG_FORMATS = ["json", "pretty"] as const;
