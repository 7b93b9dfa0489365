import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { parseJournal } from "../../src/worker/job-journal.js";
import { type Child, type Scope, until } from "../harness.js";
import type { Lan, LanHost } from "./netns.js";

/**
 * The product's processes on the bench LAN: simulate workers and a gateway, each a child process
 * in its host's namespace, listening on the host's address at the port a real install uses. A
 * worker on a network address needs a token (README "Worker tokens"); the gateway gets it as
 * `--worker-token`.
 */

export const WORKER_PORT = 8000;
export const GATEWAY_PORT = 8101;

/** A fresh secret per benchmark, as an operator would make one. */
export function workerToken(): string {
  return randomBytes(24).toString("hex");
}

export interface LanWorkerSpec {
  /** Its host on the LAN; also its machine name. */
  readonly host: string;
  readonly capacity: number;
  readonly speedFactor: number;
  readonly timeScale: number;
}

export interface LanWorker {
  readonly spec: LanWorkerSpec;
  readonly host: LanHost;
  readonly child: Child;
  readonly url: string;
  readonly dataDir: string;
}

export async function startLanWorker(
  scope: Scope,
  lan: Lan,
  dir: string,
  spec: LanWorkerSpec,
  token: string,
): Promise<LanWorker> {
  const host = lan.host(spec.host);
  const dataDir = join(dir, `worker-${spec.host}`);
  const child = await scope.startCli(
    `worker-${spec.host}`,
    [
      "worker",
      "--host",
      host.address,
      "--port",
      String(WORKER_PORT),
      "--token",
      token,
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
    { readyMessage: "worker agent listening", ...(host.netns ? { netns: host.netns } : {}) },
  );
  return { spec, host, child, url: child.url, dataDir };
}

export interface LanGateway {
  readonly child: Child;
  readonly url: string;
  readonly dataDir: string;
  /** Its machines file (watched: rewriting it changes the fleet at once). */
  readonly machinesFile: string;
}

async function writeMachines(file: string, workers: readonly LanWorker[], token: string): Promise<void> {
  const machines = workers.map((w) => ({
    name: w.spec.host,
    host: w.host.address,
    port: WORKER_PORT,
    max_concurrent: w.spec.capacity,
    enabled: true,
  }));
  await writeFile(file, JSON.stringify({ worker_token: token, machines }, null, 2));
}

/**
 * A gateway on the `gateway` host with `workers` in its machines file (by LAN address), once every
 * one of them has answered a probe (GET /readyz counts them: it is public, while GET /machines
 * answers only to loopback in open mode, and the bench is not on the gateway's host). With no
 * workers, tasks wait until `setMachines` adds some.
 */
export async function startLanGateway(
  scope: Scope,
  lan: Lan,
  dir: string,
  workers: readonly LanWorker[],
  token: string,
  flags: readonly string[] = [],
): Promise<LanGateway> {
  const host = lan.host("gateway");
  const dataDir = join(dir, "gateway");
  await mkdir(dataDir, { recursive: true });
  const machinesFile = join(dir, "gateway-machines.json");
  await writeMachines(machinesFile, workers, token);
  const child = await scope.startCli(
    "gateway",
    [
      "gateway",
      "--host",
      host.address,
      "--port",
      String(GATEWAY_PORT),
      "--config",
      machinesFile,
      "--data-dir",
      dataDir,
      ...flags,
    ],
    { readyMessage: "gateway listening", ...(host.netns ? { netns: host.netns } : {}) },
  );
  await until("every machine up", () => machinesUp(child.url, workers.length), 20_000, 100);
  return { child, url: child.url, dataDir, machinesFile };
}

/** Rewrites the gateway's machines file to `workers` and waits until it has them all up. */
export async function setMachines(
  gateway: LanGateway,
  workers: readonly LanWorker[],
  token: string,
): Promise<void> {
  await writeMachines(gateway.machinesFile, workers, token);
  await until("every machine up", () => machinesUp(gateway.url, workers.length), 20_000, 20);
}

async function machinesUp(gateway: string, expected: number): Promise<true | undefined> {
  const res = await request(`${gateway}/readyz`);
  const body = (await res.body.json()) as { checks?: { machines?: { up: number; total: number } } };
  const m = body.checks?.machines;
  return m && m.total === expected && m.up === expected ? true : undefined;
}

/** One job's run on a worker, from its journal (epoch ms). */
export interface EngineRun {
  readonly jobId: string;
  readonly startedMs: number;
  readonly finishedMs: number;
}

/**
 * Every job the worker's engine ran (its journal: started → finished), in the order they started:
 * the gateway's attempt ids, or the direct client's job ids. The simulate engine sleeps, then
 * writes the result with ffmpeg; both are the machine's work, not the network's.
 */
export async function engineRuns(worker: LanWorker): Promise<EngineRun[]> {
  const text = await readFile(join(worker.dataDir, "journal.jsonl"), "utf8").catch(() => "");
  const started = new Map<string, number>();
  const runs: EngineRun[] = [];
  for (const line of parseJournal(text)) {
    if (line.event === "started") started.set(line.job_id, Date.parse(line.at));
    else if (line.event === "finished") {
      const from = started.get(line.job_id);
      if (from !== undefined)
        runs.push({ jobId: line.job_id, startedMs: from, finishedMs: Date.parse(line.at) });
    }
  }
  return runs.sort((a, b) => a.startedMs - b.startedMs);
}
