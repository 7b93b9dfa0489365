import { readFileSync } from "node:fs";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ConfigError } from "../errors.js";

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
  return parseMachines(raw, path);
}

export function parseMachines(raw: unknown, source: string): MachinesFile {
  const withDefaults = Value.Default(MachinesFile, Value.Clone(raw));
  const first = Value.Errors(MachinesFile, withDefaults).First();
  if (first) {
    const field = first.path
      .replace(/^\//, "")
      .replace(/\/(\d+)/g, "[$1]")
      .replace(/\//g, ".");
    throw new ConfigError(source, field || "(top level)", first.message);
  }
  const file = withDefaults as MachinesFile;
  const seen = new Set<string>();
  file.machines.forEach((m, i) => {
    if (seen.has(m.name))
      throw new ConfigError(source, `machines[${i}].name`, `duplicate machine name "${m.name}"`);
    seen.add(m.name);
  });
  return file;
}
