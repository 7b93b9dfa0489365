import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type JournalLine, parseJournal } from "../../src/worker/job-journal.js";
import { taskForm } from "./gateway.js";
import { type Started, startWorkerProcess } from "./processes.js";

export interface SimWorker {
  name: string;
  dataDir: string;
  capacity: number;
  process: Started;
  port: number;
}

/** A `multi-heygem worker --engine simulate` child process: sleeps audio × factor × scale per job. */
export async function startSimWorker(
  dir: string,
  name: string,
  options: { capacity: number; speedFactor?: number; timeScale: number; port?: number },
): Promise<SimWorker> {
  const dataDir = join(dir, `worker-${name}`);
  const process = await startWorkerProcess([
    "--engine",
    "simulate",
    "--data-dir",
    dataDir,
    "--max-concurrent",
    String(options.capacity),
    "--speed-factor",
    String(options.speedFactor ?? 1),
    "--time-scale",
    String(options.timeScale),
    ...(options.port ? ["--port", String(options.port)] : []),
  ]);
  return { name, dataDir, capacity: options.capacity, process, port: Number(new URL(process.url).port) };
}

export async function writeMachines(
  file: string,
  machines: Array<{ name: string; port: number; max_concurrent: number; enabled?: boolean }>,
): Promise<void> {
  const body = { machines: machines.map((m) => ({ host: "127.0.0.1", enabled: true, ...m })) };
  // Write then rename, as config tools do: the watcher must see the whole file at once.
  await writeFile(`${file}.tmp`, JSON.stringify(body, null, 2));
  const { rename } = await import("node:fs/promises");
  await rename(`${file}.tmp`, file);
}

/** The worker's own record of what its engine ran. */
export async function journal(worker: { dataDir: string }): Promise<JournalLine[]> {
  const text = await readFile(join(worker.dataDir, "journal.jsonl"), "utf8").catch(() => "");
  return parseJournal(text);
}

export async function startedJobs(worker: { dataDir: string }): Promise<string[]> {
  return (await journal(worker)).filter((l) => l.event === "started").map((l) => l.job_id);
}

export async function createTask(
  gatewayUrl: string,
  audio: string,
  video: string,
  extra: Record<string, string> = {},
): Promise<string> {
  const res = await fetch(`${gatewayUrl}/tasks`, {
    method: "POST",
    body: await taskForm({ audio: { path: audio }, video: { path: video }, ...extra }),
  });
  if (res.status !== 200) throw new Error(`POST /tasks answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { task_id: string }).task_id;
}

export interface TaskJson {
  task_id: string;
  status: string;
  machine: string | null;
  attempts: number;
  error_message: string | null;
}

export async function getTask(gatewayUrl: string, id: string): Promise<TaskJson> {
  return (await (await fetch(`${gatewayUrl}/tasks/${id}`)).json()) as TaskJson;
}
