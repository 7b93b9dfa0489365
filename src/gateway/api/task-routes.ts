import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { BlobStore } from "../../blobs/blob-store.js";
import { errorBody, httpStatus } from "../../error-codes.js";
import { AppError, ConflictError, InputError, NotFoundError } from "../../errors.js";
import { contentDisposition, sendFile } from "../../http/send-file.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import { linkSignals } from "../../linked-signal.js";
import { forLog } from "../../logger.js";
import type { AvatarStore } from "../../store/avatar-store.js";
import { FINAL_TASK_STATUSES, type TaskRow } from "../../store/schema.js";
import type { TaskNeed } from "../../store/task-speech.js";
import type { TaskStore } from "../../store/task-store.js";
import type { VoiceStore } from "../../store/voice-store.js";
import {
  checkPriority,
  ownerScope,
  taskOwner,
  visibleAvatar,
  visibleTask,
  visibleVoice,
} from "../auth/access-control.js";
import type { AddressPolicy } from "../callbacks/address-policy.js";
import type { Clock } from "../clock.js";
import type { DataDirHealth } from "../data-dir-health.js";
import type { MediaInspector } from "../media-inspector.js";
import type { Prestager } from "../prestage.js";
import type { QueueLimit } from "../queue-limit.js";
import type { ArrivingResult, ResultRelay } from "../result-relay.js";
import type { TaskLifecycle } from "../task-lifecycle.js";
import { waitForFinal } from "../task-waiter.js";
import { assertFiniteQuery } from "./finite-query.js";
import {
  BulkCancelQuery,
  BulkCancelResult,
  ErrorBody,
  ListQuery,
  StatusCallback,
  SyncFailure,
  SyncUnavailable,
  TaskEvents,
  TaskForm,
  TaskIdParams,
  TaskList,
  TaskView,
} from "./schemas.js";
import { toEventView, toTaskView } from "./task-views.js";
import { receiveTaskUpload } from "./upload.js";
import { discardBody, type UploadDeadlineOptions } from "./upload-deadline.js";

export interface TaskRoutesOptions {
  clock: Clock;
  store: TaskStore;
  /** The avatars a task may name instead of uploading a video (issue 12). */
  avatars: AvatarStore;
  /** The voices a text task may speak in (issue 12). */
  voices: VoiceStore;
  /** Throws when no machine of the fleet can take a task that needs `need` (fleet-abilities.ts). */
  refuseUnservable: (need: TaskNeed) => void;
  blobs: BlobStore;
  /** Decides what each uploaded file is, once per content hash. */
  inspector: MediaInspector;
  maxUploadBytes: number;
  maxAudioSeconds: number;
  /** `--max-pending`: admission before the upload is read. */
  queue: QueueLimit;
  /** `--min-free-disk`: room on disk before the upload is read. */
  dataDir: DataDirHealth;
  /** Idle and whole-upload timeouts. */
  upload: UploadDeadlineOptions;
  syncTimeoutMs: number;
  /** A sync request's result, as it comes home from the machine (result-relay.ts). */
  relay: ResultRelay;
  /** Where a callback_url may point. */
  callbackPolicy: AddressPolicy;
  /** Sends a template video ahead to a machine while the client still uploads it. */
  prestage?: Prestager;
  /** A task was created: place it. */
  onTaskCreated: () => void;
  /** Cancel, retry and the bulk cancel. */
  lifecycle: TaskLifecycle;
  /**
   * Why a new task will wait, when it is more than a free slot ("waiting: 0 of 3 machines up"), so
   * that its events say so and nothing hangs silently (issue 10).
   */
  waitingNote?: (need: TaskNeed) => string | undefined;
  /** The gateway is shutting down: sync waiters answer 503 instead of holding the close. */
  shutdown: AbortSignal;
  /**
   * Deletes a finished task, its rows and the files no other task needs (RetentionSweeper);
   * false when it is not finished (or no longer there).
   */
  deleteTask: (taskId: string) => Promise<boolean>;
}

const errors = {
  400: Type.Ref(ErrorBody),
  408: Type.Ref(ErrorBody),
  413: Type.Ref(ErrorBody),
  415: Type.Ref(ErrorBody),
  429: { ...Type.Ref(ErrorBody), description: "QUEUE_FULL: --max-pending tasks wait; see Retry-After" },
  503: {
    ...Type.Ref(ErrorBody),
    description:
      "SHUTTING_DOWN: the gateway is stopping and takes no new task; send it again after Retry-After " +
      "(seconds), to this gateway once restarted or another. STORE_UNAVAILABLE: the data dir cannot keep it",
  },
  507: Type.Ref(ErrorBody),
};

/**
 * What a POST /tasks/sync answers with, once known: the result's bytes as they come home to this
 * gateway, or the task as it stands when it ended, the client left, the gateway began to close
 * or the sync timeout passed.
 *
 * An attempt's result that fails its check before its first byte went out is no answer yet: the
 * client has seen nothing, and waits on for the next attempt's. One that fails later cuts the
 * answer short (result-relay.ts).
 */
async function syncAnswer(
  options: TaskRoutesOptions,
  taskId: string,
  chunked: boolean,
  gone: AbortSignal,
  log: FastifyRequest["log"],
): Promise<{ arriving: Readable; bytes: number } | { final: TaskRow | undefined }> {
  const deadline = options.clock.now() + options.syncTimeoutMs;
  for (;;) {
    // The result starts coming home: the wait is over, the client reads it as it arrives.
    const arrives = new AbortController();
    let arriving: ArrivingResult | undefined;
    const stopExpecting = chunked
      ? options.relay.expect(taskId, (result) => {
          arriving = result;
          arrives.abort();
        })
      : () => undefined;
    const waiting = linkSignals([gone, options.shutdown, arrives.signal]);
    const final = await waitForFinal(
      options.clock,
      options.store,
      taskId,
      Math.max(0, deadline - options.clock.now()),
      waiting.signal,
    ).finally(() => {
      waiting.dispose();
      stopExpecting();
    });
    const result: ArrivingResult | undefined = arriving;
    if (gone.aborted || !result || !(final?.status === "processing" || final?.status === "completed"))
      return { final };
    const body = await result.opened();
    if (body) return { arriving: body, bytes: result.bytes };
    log.info(
      { task_id: taskId },
      "sync: the result failed before its first byte; waiting for the next attempt",
    );
  }
}

export async function taskRoutes(app: FastifyInstance, options: TaskRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, blobs } = options;

  const createTask = async (request: FastifyRequest): Promise<TaskRow> => {
    const release = await admit(request);
    try {
      return await receiveAndRecord(request);
    } finally {
      release();
    }
  };

  /** A place in the queue and room on disk, before a byte of the upload is stored. */
  const admit = async (request: FastifyRequest): Promise<() => void> => {
    let release: (() => void) | undefined;
    try {
      release = options.queue.admit();
      await options.dataDir.assertRoomFor(Number(request.headers["content-length"]) || 0);
      return release;
    } catch (err) {
      release?.();
      await discardBody(request.raw, options.upload);
      throw err;
    }
  };

  const receiveAndRecord = async (request: FastifyRequest): Promise<TaskRow> => {
    const upload = await receiveTaskUpload(request, {
      blobs,
      inspector: options.inspector,
      maxBytes: options.maxUploadBytes,
      maxAudioSeconds: options.maxAudioSeconds,
      deadline: options.upload,
      prestage: options.prestage,
      callbackPolicy: options.callbackPolicy,
      avatar: async (id) => {
        const avatar = await visibleAvatar(options.avatars, request, id).catch((err: unknown) => {
          if (err instanceof NotFoundError) throw unknownAvatar(id);
          throw err;
        });
        return { id: avatar.id, sha256: avatar.sha256, fileName: avatar.file_name, bytes: avatar.bytes };
      },
      voice: async (id) => {
        const voice = await visibleVoice(options.voices, request, id).catch((err: unknown) => {
          if (err instanceof NotFoundError) throw unknownVoice(id);
          throw err;
        });
        return { id: voice.id, lang: voice.lang };
      },
      refuseUnservable: options.refuseUnservable,
    });
    const need: TaskNeed =
      upload.speech === null ? "lipsync" : upload.speech.voiceId === null ? "tts" : "voice_clone";
    let task: TaskRow;
    try {
      checkPriority(request, upload.priority);
      task = await upload.commitWhile(() =>
        store.createTask({
          id: randomUUID(),
          owner: taskOwner(request),
          ...waiting(options.waitingNote, need),
          description: upload.description,
          callbackUrl: upload.callbackUrl,
          priority: upload.priority,
          options: upload.options,
          audio: upload.audio && {
            sha256: upload.audio.blob.sha256,
            name: upload.audio.name,
            bytes: upload.audio.blob.bytes,
            duration: upload.audio.media.durationSec,
          },
          video: upload.video,
          avatarId: upload.avatarId,
          speech: upload.speech && {
            text: upload.speech.text,
            lang: upload.speech.lang,
            settings: upload.speech.settings,
          },
          voiceId: upload.speech?.voiceId ?? null,
        }),
      );
    } catch (err) {
      await upload.discard();
      throw err;
    }
    request.log.info(
      {
        task_id: task.id,
        ...(task.description ? { description: forLog(task.description) } : {}),
        ...(task.speech === null
          ? { audio_bytes: task.audio_bytes }
          : { text_chars: upload.speech?.text.length, voice_id: task.voice_id }),
        ...(task.avatar_id ? { avatar_id: task.avatar_id } : { video_bytes: task.video_bytes }),
      },
      "task created",
    );
    options.onTaskCreated();
    return task;
  };

  api.post(
    "/tasks",
    {
      schema: {
        summary: "Create a task and return at once",
        description:
          "Uploads the audio and the video (multipart/form-data) and queues the task. Track it with " +
          "GET /tasks/{task_id}, or give a callback_url to be told of every status change. With " +
          "avatar_id (POST /avatars) in place of the video file, the upload is the audio alone.",
        tags: ["tasks"],
        consumes: ["multipart/form-data"],
        response: { 200: Type.Ref(TaskView), ...errors },
        callbacks: StatusCallback,
      },
      config: { multipartForm: TaskForm, access: "submit" },
    },
    async (request) => toTaskView(await createTask(request), request),
  );

  api.post(
    "/tasks/sync",
    {
      schema: {
        summary: "Create a task and answer with the MP4 when it is done",
        description:
          "Waits as long as the task takes (up to the gateway's sync timeout). The task id is in the " +
          "X-Task-Id header; if the connection drops, the task still completes and can be fetched by id. " +
          "The MP4 is sent chunked as it comes home from the machine; its end is sent only once the task " +
          "is completed with it, so a body cut short (no last chunk) means this copy was not kept: the " +
          "task goes on, fetch it by id. A result that fails before its first byte is not sent: the answer " +
          "waits on for the next attempt's. HTTP/1.0 clients get it with a Content-Length once completed.",
        tags: ["tasks"],
        consumes: ["multipart/form-data"],
        produces: ["video/mp4", "application/json"],
        callbacks: StatusCallback,
        response: {
          200: Type.String({ format: "binary", description: "The MP4 (video/mp4)" }),
          ...errors,
          409: {
            ...Type.Ref(SyncFailure),
            description:
              "TASK_CANCELLED: the task was cancelled (POST /tasks/{task_id}/cancel) while it waited",
          },
          422: Type.Ref(SyncFailure),
          502: Type.Ref(SyncFailure),
          503: Type.Ref(SyncUnavailable),
          504: Type.Ref(SyncFailure),
        },
      },
      config: { multipartForm: TaskForm, access: "submit" },
    },
    async (request, reply) => {
      const task = await createTask(request);
      void reply.header("x-task-id", task.id);
      const gone = new AbortController();
      // A client that hangs up stops our waiting, never the task itself.
      reply.raw.on("close", () => gone.abort());
      // HTTP/1.0 has no chunks: a body cut short could not be told from a whole one there.
      const chunked = request.raw.httpVersionMajor > 1 || request.raw.httpVersionMinor > 0;
      const answer = await syncAnswer(options, task.id, chunked, gone.signal, request.log);
      if (gone.signal.aborted) {
        // A result opened for the client that left is read by nobody: its file is let go.
        if ("arriving" in answer) answer.arriving.destroy();
        request.log.info({ task_id: task.id }, "sync client went away; the task goes on");
        return reply;
      }
      if ("arriving" in answer) {
        request.log.info(
          { task_id: task.id, bytes: answer.bytes },
          "sync: sending the result as it comes home",
        );
        // Typed as the stored file's reply (200: binary), which a stream is too.
        const untyped: FastifyReply = reply;
        // Chunked, with no Content-Length: a body cut short then lacks its last chunk, which every
        // HTTP client reports as an error. A short body under a Content-Length is not: requests
        // over urllib3 1.x (Debian 12's) hands it over as the whole file.
        return untyped
          .type("video/mp4")
          .header("content-disposition", contentDisposition(`${task.id}.mp4`))
          .send(answer.arriving);
      }
      const final = answer.final;
      if (options.shutdown.aborted && !(final && FINAL_TASK_STATUSES.has(final.status))) {
        return reply.code(httpStatus("SHUTTING_DOWN")).send({
          ...errorBody("SHUTTING_DOWN", "the gateway is restarting; the task is kept, fetch it by id"),
          task_id: task.id,
        });
      }
      if (final?.status === "completed" && final.result_sha256) {
        return sendFile(request, reply, blobs.path(final.result_sha256), {
          contentType: "video/mp4",
          downloadName: `${task.id}.mp4`,
        });
      }
      if (final?.status === "cancelled") {
        return reply.code(httpStatus("TASK_CANCELLED")).send({
          ...errorBody("TASK_CANCELLED", final.error_message ?? "the task was cancelled"),
          task_id: task.id,
        });
      }
      if (final?.status === "failed") {
        const kind = final.error_kind === "input" ? "input" : "machine";
        return reply.code(httpStatus("TASK_FAILED", kind)).send({
          ...errorBody("TASK_FAILED", final.error_message ?? "the task failed"),
          task_id: task.id,
        });
      }
      const seconds = Math.round(options.syncTimeoutMs / 1000);
      return reply.code(httpStatus("SYNC_TIMEOUT")).send({
        ...errorBody(
          "SYNC_TIMEOUT",
          `the task did not finish within ${seconds} s; it goes on, fetch it by id`,
        ),
        task_id: task.id,
      });
    },
  );

  api.get(
    "/tasks",
    {
      config: { access: "submit" },
      schema: {
        summary: "List tasks, newest first",
        tags: ["tasks"],
        querystring: ListQuery,
        response: { 200: Type.Ref(TaskList), 400: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const { status, limit, offset } = request.query;
      const { before } = request.query;
      assertFiniteQuery({ limit, offset, before });
      const owner = ownerScope(request);
      const page = await store.listTasks({
        ...(status ? { status } : {}),
        ...(owner === undefined ? {} : { owner }),
        ...(before === undefined ? {} : { before }),
        limit,
        offset,
      });
      const last = page.tasks.at(-1);
      return {
        tasks: page.tasks.map((t) => toTaskView(t, request)),
        total: page.total,
        limit,
        offset,
        next_before: page.tasks.length === limit && last ? last.seq : null,
      };
    },
  );

  api.get(
    "/tasks/:task_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "A task's status",
        tags: ["tasks"],
        params: TaskIdParams,
        response: { 200: Type.Ref(TaskView), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => toTaskView(await visibleTask(store, request, request.params.task_id), request),
  );

  api.get(
    "/tasks/:task_id/events",
    {
      config: { access: "submit" },
      schema: {
        summary: "A task's log: one row per step, oldest first",
        tags: ["tasks"],
        params: TaskIdParams,
        response: { 200: Type.Ref(TaskEvents), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const task = await visibleTask(store, request, request.params.task_id);
      const events = await store.listEvents(task.id);
      return { task_id: task.id, events: events.map(toEventView) };
    },
  );

  api.post(
    "/tasks/:task_id/cancel",
    {
      config: { access: "submit" },
      schema: {
        summary: "Cancel a task",
        description:
          "A pending task never runs; a processing one is stopped on its machine (a HeyGem container " +
          "cannot stop a render, so its machine counts the slot busy until the render ends and the " +
          "result is thrown away). The task becomes cancelled at once, with an event and a callback; " +
          "a POST /tasks/sync waiting on it answers 409 TASK_CANCELLED. Answers with the task.",
        tags: ["tasks"],
        params: TaskIdParams,
        response: {
          200: Type.Ref(TaskView),
          404: Type.Ref(ErrorBody),
          409: {
            ...Type.Ref(ErrorBody),
            description: "TASK_FINISHED: completed, failed or cancelled already",
          },
        },
      },
    },
    async (request) => {
      const task = await visibleTask(store, request, request.params.task_id);
      return toTaskView(await options.lifecycle.cancel(task), request);
    },
  );

  api.post(
    "/tasks/:task_id/retry",
    {
      config: { access: "submit" },
      schema: {
        summary: "Run a failed or cancelled task again",
        description:
          "The task goes back to pending under the same id with fresh attempts (the whole --max-attempts " +
          "again); its error is cleared. Answers with the task.",
        tags: ["tasks"],
        params: TaskIdParams,
        response: {
          200: Type.Ref(TaskView),
          404: Type.Ref(ErrorBody),
          409: {
            ...Type.Ref(ErrorBody),
            description: "TASK_NOT_RETRYABLE: the task is pending, processing or completed",
          },
          410: {
            ...Type.Ref(ErrorBody),
            description: "INPUTS_DELETED: its audio or video was deleted (retention); create a new task",
          },
          429: {
            ...Type.Ref(ErrorBody),
            description: "QUEUE_FULL: --max-pending tasks wait; see Retry-After",
          },
        },
      },
    },
    async (request) => {
      const task = await visibleTask(store, request, request.params.task_id);
      return toTaskView(await options.lifecycle.retry(task), request);
    },
  );

  api.post(
    "/tasks/cancel",
    {
      config: { access: "admin" },
      schema: {
        summary: "Cancel every pending task (empty the queue)",
        description:
          "Each task gets its cancelled event and callback, as if cancelled one by one; running tasks " +
          "go on. Only status=pending is accepted for now.",
        tags: ["tasks"],
        querystring: BulkCancelQuery,
        response: { 200: Type.Ref(BulkCancelResult), 400: Type.Ref(ErrorBody) },
      },
    },
    async () => ({ cancelled: await options.lifecycle.cancelPending() }),
  );

  const result = async (request: FastifyRequest<{ Params: { task_id: string } }>, reply: FastifyReply) => {
    const task = await visibleTask(store, request, request.params.task_id);
    if (task.status !== "completed" || !task.result_sha256) {
      throw new ConflictError(
        "TASK_NOT_COMPLETED",
        `task ${task.id} is ${task.status}; the result exists once completed`,
      );
    }
    if (task.files_deleted_at !== null) {
      throw new AppError(
        "RESULT_EXPIRED",
        `the result of task ${task.id} was deleted at ${task.files_deleted_at} (--retention); the task's record remains`,
      );
    }
    return sendFile(request, reply, blobs.path(task.result_sha256), {
      contentType: "video/mp4",
      downloadName: `${task.id}.mp4`,
    });
  };
  const resultSchema = {
    summary: "The task's MP4 (Range requests supported)",
    tags: ["tasks"],
    params: TaskIdParams,
    produces: ["video/mp4"],
    response: {
      200: Type.String({ format: "binary", description: "The MP4" }),
      206: Type.String({ format: "binary", description: "The requested byte range" }),
      404: Type.Ref(ErrorBody),
      409: Type.Ref(ErrorBody),
      410: { ...Type.Ref(ErrorBody), description: "RESULT_EXPIRED: deleted after --retention" },
      416: Type.Ref(ErrorBody),
    },
  };
  api.delete(
    "/tasks/:task_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "Delete a finished task, its record and its files",
        description:
          "For a completed, failed or otherwise finished task: deletes its record (events, attempts, " +
          "callbacks) and its inputs and result, except files another task still uses (a shared " +
          "template video stays). Answers 204 without a body. A pending or processing task answers " +
          "409 TASK_NOT_FINISHED: cancel it first.",
        tags: ["tasks"],
        params: TaskIdParams,
        response: {
          204: Type.Null({ description: "Deleted" }),
          404: Type.Ref(ErrorBody),
          409: { ...Type.Ref(ErrorBody), description: "TASK_NOT_FINISHED: pending or processing" },
        },
      },
    },
    async (request, reply) => {
      const task = await visibleTask(store, request, request.params.task_id);
      if (!FINAL_TASK_STATUSES.has(task.status)) throw notFinished(task);
      if (!(await options.deleteTask(task.id))) {
        // Between the read and the delete it was deleted by another request, or retried.
        const now = await store.getTask(task.id);
        throw now ? notFinished(now) : new NotFoundError(`no task ${task.id}`);
      }
      request.log.info({ task_id: task.id, status: task.status }, "task deleted");
      return reply.code(204).send(null);
    },
  );

  const config = { access: "submit" } as const;
  api.get("/tasks/:task_id/result", { schema: resultSchema, config, exposeHeadRoute: false }, result);
  api.head(
    "/tasks/:task_id/result",
    // Listed in the document on purpose: the other HEADs Fastify answers are not (docs.ts).
    {
      schema: { ...resultSchema, summary: "The result's size" },
      config: { ...config, swagger: { exposeHeadRoute: true } },
    },
    result,
  );
}

/** A live task must be stopped before it can go: its files are in use on a machine. */
function notFinished(task: TaskRow): ConflictError {
  return new ConflictError(
    "TASK_NOT_FINISHED",
    `task ${task.id} is ${task.status}: cancel it first (POST /tasks/${task.id}/cancel), then delete it`,
  );
}

/** Another key's avatar is as unknown as one that never was. */
function unknownAvatar(id: string): InputError {
  return new InputError(
    "UNKNOWN_AVATAR",
    `no avatar ${id}: create one with POST /avatars, or send a video file`,
    "avatar_id",
  );
}

/** Another key's voice is as unknown as one that never was. */
function unknownVoice(id: string): InputError {
  return new InputError(
    "UNKNOWN_VOICE",
    `no voice ${id}: create one with POST /voices, or leave voice_id out to use the machine's own voice`,
    "voice_id",
  );
}

function waiting(
  note: ((need: TaskNeed) => string | undefined) | undefined,
  need: TaskNeed,
): { waiting?: string } {
  const text = note?.(need);
  return text ? { waiting: text } : {};
}
