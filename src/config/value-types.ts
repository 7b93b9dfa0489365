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

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * A span of time written with its unit (`90s`, `10m`, `1h`, `7d`), held in milliseconds; a bare
 * number is milliseconds, as in the `<ms>` options. worker.json takes the same text, or a number.
 */
export function duration(limits: { minMs: number }): ValueType<number> {
  const read = (text: string) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
    if (!match) return undefined;
    const ms = Math.round(Number(match[1]) * (DURATION_UNITS[match[2] ?? "ms"] ?? 1));
    return Number.isFinite(ms) && ms >= limits.minMs ? ms : undefined;
  };
  return {
    expected: "a duration such as 30s, 10m or 1h (a bare number is milliseconds)",
    json: Type.Union([Type.String(), Type.Number()]),
    parse: read,
    check: (value) =>
      typeof value === "string" ? read(value) : typeof value === "number" ? read(String(value)) : undefined,
    show: (ms) => {
      for (const unit of ["d", "h", "m", "s"] as const) {
        const size = DURATION_UNITS[unit] ?? 1;
        if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
      }
      return `${ms}ms`;
    },
  };
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
