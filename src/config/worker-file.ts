import { type Static, Type } from "@sinclair/typebox";
import { HeygemSection } from "./heygem-config.js";
import { readJsonFile, validateSettings } from "./json-file.js";
import { fileProperties } from "./options.js";
import { TtsSection } from "./tts-config.js";
import { WORKER_OPTIONS } from "./worker-options.js";

/**
 * `multi-heygem worker --config worker.json`: the worker's settings in a file, in the flags'
 * words (snake_case; each key is declared with its flag in worker-options.ts). Flags given on the
 * command line win over the file. Unknown keys are refused so that a misspelt setting is not
 * silently ignored; limits are checked where the flags' are (options.ts, `readSettings`).
 */
export const WorkerFile = Type.Object(
  { ...fileProperties(WORKER_OPTIONS), heygem: Type.Optional(HeygemSection), tts: Type.Optional(TtsSection) },
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
