import { readFileSync } from "node:fs";
import type { Static, TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType } from "@sinclair/typebox/value";
import { ConfigError } from "../errors.js";

/** Reads a JSON settings file; a missing or malformed file is a ConfigError naming it. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(path, "", code === "ENOENT" ? "file not found" : `cannot read: ${String(err)}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(path, "", `not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Checks `raw` against `schema` after filling in its defaults; the first problem is a ConfigError
 * naming `source` and the field as a person writes it (`machines[1].port`).
 */
export function validateSettings<S extends TSchema>(schema: S, raw: unknown, source: string): Static<S> {
  const value = Value.Default(schema, Value.Clone(raw));
  const first = Value.Errors(schema, value).First();
  if (first) {
    const field = first.path
      .replace(/^\//, "")
      .replace(/\/(\d+)/g, "[$1]")
      .replace(/\//g, ".");
    const allowed = (first.schema as { properties?: Record<string, unknown> }).properties ?? {};
    const problem =
      first.type === ValueErrorType.ObjectAdditionalProperties
        ? `unknown setting (allowed: ${Object.keys(allowed).join(", ")})`
        : first.message;
    throw new ConfigError(source, field || "(top level)", problem);
  }
  return value as Static<S>;
}
