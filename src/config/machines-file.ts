import { type Static, Type } from "@sinclair/typebox";
import { ConfigError } from "../errors.js";
import { readJsonFile, validateSettings } from "./json-file.js";

/** The seed's `config/machines.json` format, unchanged. */
export const MachineEntry = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }),
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  max_concurrent: Type.Integer({ minimum: 1, maximum: 1000, default: 1 }),
  enabled: Type.Boolean({ default: true }),
});
export type MachineEntry = Static<typeof MachineEntry>;

export const MachinesFile = Type.Object({
  machines: Type.Array(MachineEntry),
  worker_token: Type.Optional(Type.String({ description: "Shared secret every worker agent expects" })),
});
export type MachinesFile = Static<typeof MachinesFile>;

/** Reads and validates a machines file; every problem names the file and the field. */
export function loadMachinesFile(path: string): MachinesFile {
  return parseMachines(readJsonFile(path), path);
}

export function parseMachines(raw: unknown, source: string): MachinesFile {
  const file = validateSettings(MachinesFile, raw, source);
  const seen = new Set<string>();
  file.machines.forEach((m, i) => {
    if (seen.has(m.name))
      throw new ConfigError(source, `machines[${i}].name`, `duplicate machine name "${m.name}"`);
    seen.add(m.name);
  });
  return file;
}
