import type { Static } from "@sinclair/typebox";
import type {
  AvatarList,
  AvatarView,
  AvatarWarming,
  MachineList,
  MachineView,
  TaskCallbacks,
  TaskEvent,
  TaskEvents,
  TaskList,
  TaskView,
  VoiceList,
  VoiceView,
} from "../gateway/api/schemas.js";
import { type ReadMessage, readEventStream } from "../http/event-stream-reader.js";
import { ApiError } from "./api-error.js";
import { type UploadPart, uploadBody } from "./upload-body.js";

export type Task = TaskView;
export type TaskStatus = Task["status"];
export type TaskEventRow = Static<typeof TaskEvent>;
export type TaskPage = Static<typeof TaskList>;
export type Machine = Static<typeof MachineView>;
export type Avatar = AvatarView;
export type AvatarPage = Static<typeof AvatarList>;
export type CallbackDeliveries = Static<typeof TaskCallbacks>;
export type Voice = VoiceView;
export type VoicePage = Static<typeof VoiceList>;

/**
 * A file to upload: a path (Node only), a Blob or File, bytes, or a stream (whose length is then
 * unknown, so the upload goes chunked).
 */
export type FileInput = string | Blob | Uint8Array | ReadableStream<Uint8Array>;

/**
 * A new task: an audio file, or a text the machine speaks (in a cloned voice with `voiceId`),
 * and the person's video or an avatar.
 */
export interface NewTask {
  /** What is said; or leave it out and give `text`. */
  audio?: FileInput;
  /** Said by the machine instead of an uploaded audio (a text task). */
  text?: string;
  /** A voice made with `createVoice`; without it the machine's own voice speaks. */
  voiceId?: string;
  /** The text's language (default: the voice's, else `zh`). */
  lang?: string;
  /** fish-speech's settings, with its names and bounds. */
  temperature?: number;
  topP?: number;
  chunkLength?: number;
  repetitionPenalty?: number;
  /** The person's video; or leave it out and name an avatar uploaded once (`avatarId`). */
  video?: FileInput;
  avatarId?: string;
  description?: string;
  callbackUrl?: string;
  priority?: number;
  /** HeyGem's options, as the seed's form sends them. */
  chaofen?: 0 | 1;
  watermarkSwitch?: 0 | 1;
  pn?: 0 | 1;
}

export interface UploadOptions {
  /** Bytes of the request body sent so far, and its size when known. */
  onUpload?: (sent: number, total: number | undefined) => void;
  signal?: AbortSignal;
}

/** A message of the task streams (`GET /tasks/stream`, `GET /tasks/{id}/stream`). */
export type StreamMessage =
  | { type: "task"; id: number; task: Task; event: TaskEventRow }
  | { type: "progress"; task: Task }
  | { type: "snapshot"; id: number; task: Task }
  | { type: "ready"; id: number }
  | { type: "reset"; id: number };

export interface ClientOptions {
  /** The gateway, e.g. `http://127.0.0.1:8101` (the default). */
  url?: string;
  /** Sent as `Authorization: Bearer …`; leave out for a gateway without keys. */
  apiKey?: string;
  /** Another fetch (a test's, a proxy-aware one). */
  fetch?: typeof fetch;
  /** Milliseconds before a dropped stream is resumed (default 3000, as the gateway's `retry:`). */
  reconnectMs?: number;
}

/** Statuses a task does not leave by itself (`retry` can still move a failed or cancelled one). */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

const RECONNECT_MS = 3000;

/**
 * The gateway's REST API as typed calls, for Node and browsers alike: the CLI, the dashboard and
 * the tests use it. Its types are the API's TypeBox schemas (src/gateway/api/schemas.ts), so a
 * change of the API that the client does not follow fails to compile.
 */
export class Client {
  readonly url: string;
  private readonly apiKey: string | undefined;
  private readonly fetch: typeof fetch;
  private readonly reconnectMs: number;

  constructor(options: ClientOptions = {}) {
    this.reconnectMs = options.reconnectMs ?? RECONNECT_MS;
    this.url = (options.url ?? "http://127.0.0.1:8101").replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** `POST /tasks`: uploads the inputs and answers with the new task (status `pending`). */
  async createTask(input: NewTask, options: UploadOptions = {}): Promise<Task> {
    const parts: UploadPart[] = [];
    if (input.audio !== undefined)
      parts.push({ name: "audio", file: await fileContent(input.audio, "audio") });
    if (input.video !== undefined)
      parts.push({ name: "video", file: await fileContent(input.video, "video") });
    const fields: [string, string | number | undefined][] = [
      ["text", input.text],
      ["voice_id", input.voiceId],
      ["lang", input.lang],
      ["temperature", input.temperature],
      ["top_p", input.topP],
      ["chunk_length", input.chunkLength],
      ["repetition_penalty", input.repetitionPenalty],
      ["avatar_id", input.avatarId],
      ["description", input.description],
      ["callback_url", input.callbackUrl],
      ["priority", input.priority],
      ["chaofen", input.chaofen],
      ["watermark_switch", input.watermarkSwitch],
      ["pn", input.pn],
    ];
    for (const [name, value] of fields) if (value !== undefined) parts.push({ name, value: String(value) });
    const body = uploadBody(parts);
    const res = await this.request("POST", "/tasks", {
      body: body.stream((sent) => options.onUpload?.(sent, body.length)),
      headers: {
        "content-type": body.contentType,
        ...(body.length === undefined ? {} : { "content-length": String(body.length) }),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return (await res.json()) as Task;
  }

  async getTask(id: string, signal?: AbortSignal): Promise<Task> {
    return this.json<Task>("GET", `/tasks/${encodeURIComponent(id)}`, signal);
  }

  /** A page of tasks, newest first. */
  async listTasks(
    query: { status?: TaskStatus; limit?: number; offset?: number; before?: number } = {},
    signal?: AbortSignal,
  ): Promise<TaskPage> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const search = params.size > 0 ? `?${params}` : "";
    return this.json<TaskPage>("GET", `/tasks${search}`, signal);
  }

  async events(id: string, signal?: AbortSignal): Promise<TaskEventRow[]> {
    const page = await this.json<Static<typeof TaskEvents>>(
      "GET",
      `/tasks/${encodeURIComponent(id)}/events`,
      signal,
    );
    return page.events;
  }

  /** `GET /tasks/{id}/callbacks`: every delivery to the task's callback_url, each with its tries. */
  async callbacks(id: string, signal?: AbortSignal): Promise<CallbackDeliveries> {
    return this.json<CallbackDeliveries>("GET", `/tasks/${encodeURIComponent(id)}/callbacks`, signal);
  }

  /** `POST /tasks/{id}/cancel`: a pending task never runs, a running one is stopped. */
  async cancel(id: string, signal?: AbortSignal): Promise<Task> {
    return this.json<Task>("POST", `/tasks/${encodeURIComponent(id)}/cancel`, signal);
  }

  /** `POST /tasks/{id}/retry`: a failed or cancelled task goes back to the queue under its id. */
  async retry(id: string, signal?: AbortSignal): Promise<Task> {
    return this.json<Task>("POST", `/tasks/${encodeURIComponent(id)}/retry`, signal);
  }

  /** `DELETE /tasks/{id}`: a finished task and its files. */
  async delete(id: string, signal?: AbortSignal): Promise<void> {
    await this.request("DELETE", `/tasks/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  /** The result MP4 as a stream, with its size. */
  async result(
    id: string,
    signal?: AbortSignal,
  ): Promise<{ body: ReadableStream<Uint8Array>; bytes: number | undefined }> {
    return this.download(`/tasks/${encodeURIComponent(id)}/result`, signal);
  }

  /** The task's audio as a stream: a text task's spoken WAV once spoken, else the uploaded file. */
  async audio(
    id: string,
    signal?: AbortSignal,
  ): Promise<{ body: ReadableStream<Uint8Array>; bytes: number | undefined }> {
    return this.download(`/tasks/${encodeURIComponent(id)}/audio`, signal);
  }

  private async download(
    path: string,
    signal?: AbortSignal,
  ): Promise<{ body: ReadableStream<Uint8Array>; bytes: number | undefined }> {
    const res = await this.request("GET", path, signal ? { signal } : {});
    const length = res.headers.get("content-length");
    if (!res.body) throw new ApiError(res.status, "EMPTY_RESULT", "the gateway sent no body");
    return { body: res.body, bytes: length === null ? undefined : Number(length) };
  }

  /**
   * Saves the result to `path` (Node only), written to a temporary name first and renamed once
   * complete, so a broken download never leaves a file that looks whole.
   */
  async saveResult(id: string, path: string, options: SaveOptions = {}): Promise<number> {
    return save(await this.result(id, options.signal), path, options);
  }

  /** Saves the task's audio (a text task's spoken WAV) to `path` (Node only), as `saveResult` does. */
  async saveAudio(id: string, path: string, options: SaveOptions = {}): Promise<number> {
    return save(await this.audio(id, options.signal), path, options);
  }

  /** `POST /avatars`: a template video uploaded once, for tasks to name by `avatarId`. */
  async createAvatar(
    input: { video: FileInput; name?: string; warm?: boolean },
    options: UploadOptions = {},
  ): Promise<Avatar> {
    const parts: UploadPart[] = [{ name: "video", file: await fileContent(input.video, "video") }];
    if (input.name !== undefined) parts.push({ name: "name", value: input.name });
    if (input.warm !== undefined) parts.push({ name: "warm", value: String(input.warm) });
    const body = uploadBody(parts);
    const res = await this.request("POST", "/avatars", {
      body: body.stream((sent) => options.onUpload?.(sent, body.length)),
      headers: {
        "content-type": body.contentType,
        ...(body.length === undefined ? {} : { "content-length": String(body.length) }),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return (await res.json()) as Avatar;
  }

  async listAvatars(
    query: { limit?: number; offset?: number } = {},
    signal?: AbortSignal,
  ): Promise<AvatarPage> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const search = params.size > 0 ? `?${params}` : "";
    return this.json<AvatarPage>("GET", `/avatars${search}`, signal);
  }

  async getAvatar(id: string, signal?: AbortSignal): Promise<Avatar> {
    return this.json<Avatar>("GET", `/avatars/${encodeURIComponent(id)}`, signal);
  }

  /** `DELETE /avatars/{id}`; refused (409 AVATAR_IN_USE) while a live task uses it. */
  async deleteAvatar(id: string, signal?: AbortSignal): Promise<void> {
    await this.request("DELETE", `/avatars/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  /** `POST /avatars/{id}/warm`: sends the video now to every up machine that lacks it. */
  async warmAvatar(id: string, signal?: AbortSignal): Promise<Static<typeof AvatarWarming>> {
    return this.json("POST", `/avatars/${encodeURIComponent(id)}/warm`, signal);
  }

  /**
   * `POST /voices`: a voice from a recording (`audio`) or from an avatar's own sound (`avatarId`),
   * answered once a machine that can clone has prepared it.
   */
  async createVoice(
    input:
      | { audio: FileInput; name?: string; lang?: string }
      | { avatarId: string; name?: string; lang?: string },
    options: UploadOptions = {},
  ): Promise<Voice> {
    const parts: UploadPart[] =
      "audio" in input
        ? [{ name: "audio", file: await fileContent(input.audio, "audio") }]
        : [{ name: "avatar_id", value: input.avatarId }];
    if (input.name !== undefined) parts.push({ name: "name", value: input.name });
    if (input.lang !== undefined) parts.push({ name: "lang", value: input.lang });
    const body = uploadBody(parts);
    const res = await this.request("POST", "/voices", {
      body: body.stream((sent) => options.onUpload?.(sent, body.length)),
      headers: {
        "content-type": body.contentType,
        ...(body.length === undefined ? {} : { "content-length": String(body.length) }),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return (await res.json()) as Voice;
  }

  async listVoices(
    query: { limit?: number; offset?: number } = {},
    signal?: AbortSignal,
  ): Promise<VoicePage> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const search = params.size > 0 ? `?${params}` : "";
    return this.json<VoicePage>("GET", `/voices${search}`, signal);
  }

  async getVoice(id: string, signal?: AbortSignal): Promise<Voice> {
    return this.json<Voice>("GET", `/voices/${encodeURIComponent(id)}`, signal);
  }

  /** `DELETE /voices/{id}`; refused (409 VOICE_IN_USE) while a live task speaks in it. */
  async deleteVoice(id: string, signal?: AbortSignal): Promise<void> {
    await this.request("DELETE", `/voices/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  async machines(signal?: AbortSignal): Promise<Machine[]> {
    return (await this.json<Static<typeof MachineList>>("GET", "/machines", signal)).machines;
  }

  async drain(name: string, signal?: AbortSignal): Promise<Machine> {
    return this.json<Machine>("POST", `/machines/${encodeURIComponent(name)}/drain`, signal);
  }

  async resume(name: string, signal?: AbortSignal): Promise<Machine> {
    return this.json<Machine>("POST", `/machines/${encodeURIComponent(name)}/resume`, signal);
  }

  /**
   * Live changes, from `GET /tasks/stream` (every task the key may see) or, with `taskId`, from
   * that task's stream, which ends after its final change. A dropped connection is resumed from
   * the last event seen, so nothing is missed; it stops when `signal` aborts.
   */
  async *follow(
    options: { taskId?: string; lastEventId?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<StreamMessage> {
    const path = options.taskId ? `/tasks/${encodeURIComponent(options.taskId)}/stream` : "/tasks/stream";
    let last = options.lastEventId;
    for (;;) {
      let res: Response;
      try {
        res = await this.request("GET", path, {
          headers: {
            accept: "text/event-stream",
            ...(last === undefined ? {} : { "last-event-id": String(last) }),
          },
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } catch (err) {
        if (options.signal?.aborted || !(err instanceof ApiError) || (err.status !== 0 && err.status < 500))
          throw err;
        await pause(this.reconnectMs, options.signal);
        continue;
      }
      // 204: a task's stream after its final event; nothing more will come.
      if (res.status === 204 || !res.body) return;
      let ended = false;
      try {
        for await (const raw of readEventStream(res.body)) {
          const message = parseMessage(raw);
          if (!message) continue;
          if ("id" in message) last = message.id;
          yield message;
          const final =
            (message.type === "task" || message.type === "snapshot") &&
            FINAL_STATUSES.has(message.task.status);
          if (options.taskId && final) ended = true;
        }
      } catch {
        // The connection broke: resume from the last event seen, below.
        if (options.signal?.aborted) return;
      }
      if (ended || options.signal?.aborted) return;
      await pause(this.reconnectMs, options.signal);
    }
  }

  /**
   * Resolves with the task once it is final, calling `onUpdate` with every change on the way
   * (status, machine, progress).
   */
  async waitFor(
    id: string,
    options: { onUpdate?: (task: Task) => void; signal?: AbortSignal } = {},
  ): Promise<Task> {
    let latest: Task | undefined;
    for await (const message of this.follow({
      taskId: id,
      ...(options.signal ? { signal: options.signal } : {}),
    })) {
      if (!("task" in message)) continue;
      latest = message.task;
      options.onUpdate?.(latest);
      if (message.type !== "progress" && FINAL_STATUSES.has(latest.status)) return latest;
    }
    if (options.signal?.aborted) throw options.signal.reason;
    // The stream ended without a final change in view (asked after the end): the task says.
    return this.getTask(id, options.signal);
  }

  private async json<T>(method: string, path: string, signal?: AbortSignal): Promise<T> {
    const res = await this.request(method, path, signal ? { signal } : {});
    return (await res.json()) as T;
  }

  /** One call; any answer but 2xx becomes an ApiError, and so does no answer at all. */
  private async request(
    method: string,
    path: string,
    init: { body?: ReadableStream<Uint8Array>; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let res: Response;
    try {
      res = await this.fetch(`${this.url}${path}`, {
        method,
        headers,
        ...(init.body ? { body: init.body, duplex: "half" } : {}),
        ...(init.signal ? { signal: init.signal } : {}),
      } as RequestInit);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
      throw new ApiError(0, "UNREACHABLE", `cannot reach ${this.url}${cause}`);
    }
    if (!res.ok) throw await ApiError.from(res);
    return res;
  }
}

async function fileContent(
  input: FileInput,
  field: string,
): Promise<{ content: Blob | ReadableStream<Uint8Array>; filename: string }> {
  if (typeof input === "string") {
    const { openAsBlob } = await import("node:fs");
    const { basename } = await import("node:path");
    return { content: await openAsBlob(input), filename: basename(input) };
  }
  // The cast: DOM typings take only ArrayBuffer-backed views, which is what a caller hands in.
  if (input instanceof Uint8Array)
    return { content: new Blob([input as Uint8Array<ArrayBuffer>]), filename: field };
  if (input instanceof Blob)
    return { content: input, filename: "name" in input ? String(input.name) : field };
  return { content: input, filename: field };
}

function parseMessage(raw: ReadMessage): StreamMessage | undefined {
  let body: { task?: Task; event?: TaskEventRow; last_event_id?: number };
  try {
    body = JSON.parse(raw.data) as typeof body;
  } catch {
    return undefined;
  }
  const id = Number(raw.lastEventId);
  if (raw.event === "task" && body.task && body.event)
    return { type: "task", id, task: body.task, event: body.event };
  if (raw.event === "progress" && body.task) return { type: "progress", task: body.task };
  if (raw.event === "snapshot" && body.task) return { type: "snapshot", id, task: body.task };
  if (raw.event === "ready" || raw.event === "reset") return { type: raw.event, id };
  return undefined;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

export interface SaveOptions {
  onBytes?: (received: number, total: number | undefined) => void;
  signal?: AbortSignal;
}

/** Writes a download to `path` under a temporary name, renamed once complete (Node only). */
async function save(
  download: { body: ReadableStream<Uint8Array>; bytes: number | undefined },
  path: string,
  options: SaveOptions,
): Promise<number> {
  const { createWriteStream } = await import("node:fs");
  const { rename, rm } = await import("node:fs/promises");
  const { Readable, Transform } = await import("node:stream");
  const { pipeline } = await import("node:stream/promises");
  const { body, bytes } = download;
  let received = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      options.onBytes?.(received, bytes);
      done(null, chunk);
    },
  });
  const partial = `${path}.part`;
  try {
    await pipeline(
      Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>),
      count,
      createWriteStream(partial),
      options.signal ? { signal: options.signal } : {},
    );
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  return received;
}
