import { readFileSync } from "node:fs";
import { type Static, Type } from "@sinclair/typebox";
import { Value, ValueErrorType } from "@sinclair/typebox/value";
import { ConfigError } from "../errors.js";
import { HeygemSection } from "./heygem-config.js";

/**
 * `multi-heygem worker --config worker.json`: the worker's settings in a file, in the flags'
 * words (snake_case). Flags given on the command line win over the file. Unknown keys are refused
 * so that a misspelt setting is not silently ignored.
 */
export const WorkerFile = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1 })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    engine: Type.Optional(Type.String({ minLength: 1 })),
    data_dir: Type.Optional(Type.String({ minLength: 1 })),
    max_concurrent: Type.Optional(Type.Integer({ minimum: 1 })),
    token: Type.Optional(Type.String()),
    result_retention_hours: Type.Optional(Type.Integer({ minimum: 0 })),
    log_level: Type.Optional(Type.String()),
    heygem: Type.Optional(HeygemSection),
  },
  { additionalProperties: false },
);
export type WorkerFile = Static<typeof WorkerFile>;

/** Reads and validates a worker file; every problem names the file and the field. */
export function loadWorkerFile(path: string): WorkerFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(path, "", code === "ENOENT" ? "file not found" : `cannot read: ${String(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(path, "", `not valid JSON: ${(err as Error).message}`);
  }
  return parseWorkerFile(raw, path);
}

export function parseWorkerFile(raw: unknown, source: string): WorkerFile {
  const first = Value.Errors(WorkerFile, raw).First();
  if (first) {
    const field = first.path
      .replace(/^\//, "")
      .replace(/\/(\d+)/g, "[$1]")
      .replace(/\//g, ".");
    const problem =
      first.type === ValueErrorType.ObjectAdditionalProperties
        ? `unknown setting (allowed: ${Object.keys(first.schema.properties ?? {}).join(", ")})`
        : first.message;
    throw new ConfigError(source, field || "(top level)", problem);
  }
  return raw as WorkerFile;
}
