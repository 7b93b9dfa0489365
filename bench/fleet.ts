import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type JournalLine, parseJournal } from "../src/worker/job-journal.js";
import { type Child, type Scope, until } from "./harness.js";
import { machinesUp } from "./http.js";

/** A `multi-heygem worker --engine simulate`: sleeps audio seconds × speed factor × time scale. */
export interface SimWorkerSpec {
  readonly name: string;
  readonly capacity: number;
  readonly speedFactor: number;
  readonly timeScale: number;
}

export interface SimWorker {
  readonly spec: SimWorkerSpec;
  readonly child: Child;
  readonly port: number;
  readonly dataDir: string;
  /** As started, for a restart. */
  readonly options: SimWorkerOptions;
}

export interface SimWorkerOptions {
  /** Listen here rather than on a port the system picks (a restart keeps its machines.json entry). */
  readonly port?: number;
  /** Added to the worker's environment (FFMPEG_PATH, say). */
  readonly env?: NodeJS.ProcessEnv;
}

export async function startSimWorker(
  scope: Scope,
  dir: string,
  spec: SimWorkerSpec,
  options: SimWorkerOptions = {},
): Promise<SimWorker> {
  const dataDir = join(dir, `worker-${spec.name}`);
  const child = await scope.startWorker(
    `worker-${spec.name}`,
    [
      "--engine",
      "simulate",
      "--data-dir",
      dataDir,
      "--max-concurrent",
      String(spec.capacity),
      "--speed-factor",
      String(spec.speedFactor),
      "--time-scale",
      String(spec.timeScale),
    ],
    options,
  );
  return { spec, child, port: Number(new URL(child.url).port), dataDir, options };
}

/**
 * The same worker again after a `kill -9`: same port (the gateway's machines file still names it),
 * same data dir (its journal goes on) and environment, as a supervisor restarting it would.
 */
export function restartSimWorker(scope: Scope, dir: string, worker: SimWorker): Promise<SimWorker> {
  return startSimWorker(scope, dir, worker.spec, { ...worker.options, port: worker.port });
}

export interface MachineSpec {
  readonly name: string;
  readonly port: number;
  readonly max_concurrent: number;
}

export interface Gateway {
  readonly child: Child;
  readonly url: string;
  readonly dataDir: string;
}

/**
 * A gateway child process with its own data dir and machines file, once every machine in it has
 * answered a health probe (so no measurement includes the gateway discovering its fleet).
 */
export async function startGateway(
  scope: Scope,
  dir: string,
  machines: readonly MachineSpec[],
  flags: readonly string[] = [],
  name = "gateway",
  port?: number,
  env?: NodeJS.ProcessEnv,
): Promise<Gateway> {
  const dataDir = join(dir, name);
  await mkdir(dataDir, { recursive: true });
  const config = join(dir, `${name}-machines.json`);
  const body = { machines: machines.map((m) => ({ ...m, host: "127.0.0.1", enabled: true })) };
  await writeFile(config, JSON.stringify(body, null, 2));
  const child = await scope.startGateway(
    name,
    ["--config", config, "--data-dir", dataDir, ...flags],
    port,
    env,
  );
  await until("every machine up", () => machinesUp(child.url), 15_000);
  return { child, url: child.url, dataDir };
}

/** The worker's journal (`<data-dir>/journal.jsonl`), or undefined when it keeps none. */
export async function readJournal(worker: SimWorker): Promise<JournalLine[] | undefined> {
  const text = await readFile(join(worker.dataDir, "journal.jsonl"), "utf8").catch(() => undefined);
  return text === undefined ? undefined : parseJournal(text);
}
