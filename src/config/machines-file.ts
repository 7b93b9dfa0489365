import { isIP } from "node:net";
import { type Static, Type } from "@sinclair/typebox";
import { ConfigError } from "../errors.js";
import { readJsonFile, validateSettings } from "./json-file.js";

/**
 * The seed's `config/machines.json` format, unchanged, and as strict as worker.json (issue 10):
 * a misspelt key (`maxConcurrent`) would otherwise be dropped in silence and the default used.
 */
export const MachineEntry = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }),
    host: Type.String({
      minLength: 1,
      maxLength: 253,
      description: "A host name or an IP address, not a URL",
    }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    max_concurrent: Type.Integer({ minimum: 1, maximum: 1000, default: 1 }),
    enabled: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);
export type MachineEntry = Static<typeof MachineEntry>;

export const MachinesFile = Type.Object(
  {
    machines: Type.Array(MachineEntry),
    worker_token: Type.Optional(Type.String({ description: "Shared secret every worker agent expects" })),
  },
  { additionalProperties: false },
);
export type MachinesFile = Static<typeof MachinesFile>;

/** Reads and validates a machines file; every problem names the file and the field. */
export function loadMachinesFile(path: string): MachinesFile {
  return parseMachines(readJsonFile(path), path);
}

export function parseMachines(raw: unknown, source: string): MachinesFile {
  const file = validateSettings(MachinesFile, raw, source);
  const names = new Set<string>();
  const addresses = new Map<string, string>();
  file.machines.forEach((m, i) => {
    const problem = hostProblem(m.host);
    if (problem) throw new ConfigError(source, `machines[${i}].host`, problem);
    if (names.has(m.name))
      throw new ConfigError(source, `machines[${i}].name`, `duplicate machine name "${m.name}"`);
    names.add(m.name);
    // The same agent listed twice would get twice its max_concurrent.
    const address = `${m.host.toLowerCase().replace(/\.$/, "")}:${m.port}`;
    const other = addresses.get(address);
    if (other !== undefined)
      throw new ConfigError(
        source,
        `machines[${i}].host`,
        `${m.host}:${m.port} is already listed as "${other}"; one agent, one entry`,
      );
    addresses.set(address, m.name);
  });
  return file;
}

const HOST_NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Why `host` is not a host name or an IP address, in words that say what to write instead. */
function hostProblem(host: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) {
    const bare = host.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/[/:].*$/, "");
    return `"${host}" is a URL; write the host alone ("${bare}") and the port in "port"`;
  }
  const unbracketed = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (isIP(unbracketed) !== 0 || HOST_NAME.test(host)) return undefined;
  if (/:\d+$/.test(host) && isIP(host) === 0) return `"${host}" carries a port; put the port in "port"`;
  return `"${host}" is not a host name or an IP address`;
}
