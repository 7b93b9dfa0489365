import { type Static, Type } from "@sinclair/typebox";
import { HeygemSection } from "./heygem-config.js";
import { readJsonFile, validateSettings } from "./json-file.js";

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
  return parseWorkerFile(readJsonFile(path), path);
}

export function parseWorkerFile(raw: unknown, source: string): WorkerFile {
  return validateSettings(WorkerFile, raw, source);
}
