/**
 * A small typed client for the Multi-HeyGem gateway (Node 20+, no dependencies).
 *
 *   import { MultiHeyGemClient } from "./client.js";
 *   const client = new MultiHeyGemClient("http://localhost:8101");   // add an API key as 2nd argument
 *   const task = await client.createTask({ audio: "speech.wav", video: "person.mp4" });
 *   const done = await client.waitFor(task.task_id);
 *   await client.downloadResult(done.task_id, "out.mp4");
 */
import { createWriteStream, openAsBlob } from "node:fs";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { setTimeout as sleep } from "node:timers/promises";

export type TaskStatus = "pending" | "processing" | "completed" | "failed" | "cancelled";

export interface Task {
  task_id: string;
  status: TaskStatus;
  description: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  machine: string | null;
  progress: number;
  error_message: string | null;
  result_url: string;
}

export interface CreateTaskInput {
  audio: string;
  video: string;
  description?: string;
  callbackUrl?: string;
  priority?: number;
}

export class MultiHeyGemError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class MultiHeyGemClient {
  private readonly headers: Record<string, string>;

  /** `apiKey`: a key from the gateway's --api-keys file (`multi-heygem keys add`); none in open mode. */
  constructor(
    private readonly baseUrl = "http://localhost:8101",
    apiKey?: string,
  ) {
    this.headers = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
  }

  async createTask(input: CreateTaskInput): Promise<Task> {
    const res = await fetch(`${this.baseUrl}/tasks`, {
      method: "POST",
      headers: this.headers,
      body: await form(input),
    });
    return json<Task>(res);
  }

  async getTask(taskId: string): Promise<Task> {
    return json<Task>(await fetch(`${this.baseUrl}/tasks/${taskId}`, { headers: this.headers }));
  }

  /** Polls until the task is completed, failed or cancelled. */
  async waitFor(taskId: string, pollMs = 2000, signal?: AbortSignal): Promise<Task> {
    for (;;) {
      const task = await this.getTask(taskId);
      if (task.status === "completed" || task.status === "failed" || task.status === "cancelled") return task;
      await sleep(pollMs, undefined, signal ? { signal } : {});
    }
  }

  /** Stops the task (a pending one never runs); answers with it, now `cancelled`. */
  async cancel(taskId: string): Promise<Task> {
    return json<Task>(
      await fetch(`${this.baseUrl}/tasks/${taskId}/cancel`, { method: "POST", headers: this.headers }),
    );
  }

  /** Queues a failed or cancelled task again under its id. */
  async retry(taskId: string): Promise<Task> {
    return json<Task>(
      await fetch(`${this.baseUrl}/tasks/${taskId}/retry`, { method: "POST", headers: this.headers }),
    );
  }

  /** Streams the MP4 to `path`. */
  async downloadResult(taskId: string, path: string): Promise<void> {
    const res = await fetch(`${this.baseUrl}/tasks/${taskId}/result`, { headers: this.headers });
    if (!res.ok || !res.body) await json(res);
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), createWriteStream(path));
  }

  /** One call: upload, wait, save the MP4 to `path`. Returns the task id. */
  async generate(input: CreateTaskInput, path: string): Promise<string> {
    const res = await fetch(`${this.baseUrl}/tasks/sync`, {
      method: "POST",
      headers: this.headers,
      body: await form(input),
    });
    if (res.status !== 200 || !res.body) await json(res);
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), createWriteStream(path));
    return res.headers.get("x-task-id") ?? "";
  }
}

async function form(input: CreateTaskInput): Promise<FormData> {
  const body = new FormData();
  body.append("audio", await openAsBlob(input.audio), basename(input.audio));
  body.append("video", await openAsBlob(input.video), basename(input.video));
  if (input.description) body.append("description", input.description);
  if (input.callbackUrl) body.append("callback_url", input.callbackUrl);
  if (input.priority !== undefined) body.append("priority", String(input.priority));
  return body;
}

async function json<T>(res: Response): Promise<T> {
  const body = (await res.json()) as T & { error?: string; message?: string };
  if (!res.ok)
    throw new MultiHeyGemError(res.status, body.error ?? "HTTP_ERROR", body.message ?? res.statusText);
  return body;
}
