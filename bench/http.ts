import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { request } from "undici";

/**
 * HTTP as the benchmark's clients speak it: multipart bodies streamed from disk with an exact
 * Content-Length (a 500 MB upload never sits in the client's memory), JSON in and out.
 */

export interface FilePart {
  readonly field: string;
  readonly path: string;
}

export interface StreamedBody {
  readonly body: Readable;
  readonly length: number;
  readonly contentType: string;
}

export async function multipartBody(
  files: readonly FilePart[],
  fields: Readonly<Record<string, string>> = {},
): Promise<StreamedBody> {
  const boundary = `----mh-bench-${randomBytes(12).toString("hex")}`;
  const chunks: Array<Buffer | { path: string }> = [];
  let length = 0;
  const add = (text: string) => {
    const buf = Buffer.from(text);
    chunks.push(buf);
    length += buf.length;
  };
  for (const [name, value] of Object.entries(fields)) {
    add(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
  }
  for (const file of files) {
    add(
      `--${boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${basename(file.path)}"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    );
    chunks.push({ path: file.path });
    length += (await stat(file.path)).size;
    add("\r\n");
  }
  add(`--${boundary}--\r\n`);
  async function* generate() {
    for (const chunk of chunks) {
      if (Buffer.isBuffer(chunk)) yield chunk;
      else yield* createReadStream(chunk.path, { highWaterMark: 256 * 1024 });
    }
  }
  return {
    body: Readable.from(generate(), { objectMode: false }),
    length,
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what} answered ${status}: ${body.slice(0, 500)}`);
  }
}

export interface TaskJson {
  task_id: string;
  status: string;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  machine: string | null;
  attempts: number;
  audio_duration: number;
  error_message: string | null;
}

/** `POST /tasks` with the files as the form fields `audio` and `video`. */
export async function postTask(gateway: string, audio: string, video: string): Promise<TaskJson> {
  const form = await multipartBody([
    { field: "audio", path: audio },
    { field: "video", path: video },
  ]);
  const res = await request(`${gateway}/tasks`, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new HttpError(res.statusCode, text, "POST /tasks");
  return JSON.parse(text) as TaskJson;
}

/** `POST /tasks/sync`, the MP4 streamed to `out`. */
export async function postTaskSync(
  gateway: string,
  audio: string,
  video: string,
  out: string,
): Promise<{ taskId: string; bytes: number }> {
  const form = await multipartBody([
    { field: "audio", path: audio },
    { field: "video", path: video },
  ]);
  const res = await request(`${gateway}/tasks/sync`, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  if (res.statusCode !== 200) {
    throw new HttpError(res.statusCode, await res.body.text(), "POST /tasks/sync");
  }
  await pipeline(res.body, createWriteStream(out));
  return { taskId: String(res.headers["x-task-id"]), bytes: (await stat(out)).size };
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await request(url);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new HttpError(res.statusCode, text, `GET ${url}`);
  return JSON.parse(text) as T;
}

export async function postEmpty(url: string): Promise<void> {
  const res = await request(url, { method: "POST" });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new HttpError(res.statusCode, text, `POST ${url}`);
}

export interface MachineJson {
  name: string;
  state: string;
  running: number;
  tasks_done: number;
}

/** Waits until every machine of the gateway has answered a probe. */
export async function machinesUp(gateway: string): Promise<MachineJson[] | undefined> {
  const { machines } = await getJson<{ machines: MachineJson[] }>(`${gateway}/machines`);
  return machines.every((m) => m.state === "up") ? machines : undefined;
}

/** Every task of the gateway (up to 500 per page), newest first. */
export async function allTasks(gateway: string): Promise<TaskJson[]> {
  const tasks: TaskJson[] = [];
  for (let offset = 0; ; offset += 500) {
    const page = await getJson<{ tasks: TaskJson[]; total: number }>(
      `${gateway}/tasks?limit=500&offset=${offset}`,
    );
    tasks.push(...page.tasks);
    if (page.tasks.length === 0 || tasks.length >= page.total) return tasks;
  }
}

/** How many tasks have ended (completed or failed); undefined until `expected` have. */
export async function allEnded(gateway: string, expected: number): Promise<number | undefined> {
  const count = async (status: string) =>
    (await getJson<{ total: number }>(`${gateway}/tasks?status=${status}&limit=1`)).total;
  const ended = (await count("completed")) + (await count("failed"));
  return ended >= expected ? ended : undefined;
}
