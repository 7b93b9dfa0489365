/**
 * The catalogue of error codes, shared by the gateway and the worker agent (house-style.md,
 * "Fastify's error catalogue"): every code is declared here once, with the HTTP status of an answer
 * that carries it and, where it ends an attempt, whose fault that is. The typed errors of errors.ts
 * take their status from here, http/error-handler.ts turns them into `ErrorBody` answers, and the
 * gateway reads a worker's answers back through it (protocol/worker-client.ts), so no code is
 * matched as a bare string on either side of the wire.
 *
 * Internal failures that never leave a process as a code of their own (an ffmpeg exit, a missing
 * binary) are not listed: the engine that meets them turns them into an `EngineError` with a kind.
 */
import { type Static, Type } from "@sinclair/typebox";
import type { FailureKind } from "./errors.js";

export interface ErrorSpec {
  /** Equal to the entry's key (checked below): what `ErrorBody.error` carries. */
  readonly code: string;
  /** The HTTP status of an answer with this code; by failure kind where that decides it. */
  readonly status: number | { readonly input: number; readonly machine: number };
  /**
   * Whose fault it is when this code ends an attempt (design.md, "Task model"): `machine` lets the
   * gateway try another machine, `input` fails the task. Absent where the code ends no attempt.
   */
  readonly kind?: FailureKind;
  readonly description: string;
}

export const ERROR_CODES = {
  // The request itself (gateway and worker alike).
  INVALID_REQUEST: {
    code: "INVALID_REQUEST",
    status: 400,
    description: "the request does not match the route's schema; `field` names the first culprit",
  },
  BAD_REQUEST: { code: "BAD_REQUEST", status: 400, description: "the request could not be read" },
  UNAUTHORIZED: {
    code: "UNAUTHORIZED",
    status: 401,
    // To the gateway, a worker that refuses its token is a machine set up wrongly.
    kind: "machine",
    description:
      "no credentials: the gateway wants an API key, a worker agent its token (Authorization: Bearer …)",
  },
  INVALID_API_KEY: {
    code: "INVALID_API_KEY",
    status: 401,
    description: "an API key the gateway does not know (mistyped, or removed from the keys file)",
  },
  TOKEN_MISMATCH: {
    code: "TOKEN_MISMATCH",
    status: 401,
    kind: "machine",
    description: "the worker token sent is not this worker agent's",
  },
  FORBIDDEN: {
    code: "FORBIDDEN",
    status: 403,
    // A tokenless worker reached by a non-loopback name: set up wrongly, as above.
    kind: "machine",
    description: "known credentials whose role does not allow this call",
  },
  ADMIN_LOOPBACK_ONLY: {
    code: "ADMIN_LOOPBACK_ONLY",
    status: 403,
    description: "without --api-keys, machine administration answers loopback clients only",
  },
  PRIORITY_NOT_ALLOWED: {
    code: "PRIORITY_NOT_ALLOWED",
    status: 403,
    description: "a priority above what a submit key may set",
  },
  CROSS_SITE_REQUEST: {
    code: "CROSS_SITE_REQUEST",
    status: 403,
    description: "a browser request from an origin that is neither the gateway nor a --cors-origin",
  },
  UNSUPPORTED_CONTENT_TYPE: {
    code: "UNSUPPORTED_CONTENT_TYPE",
    status: 415,
    description: "a state-changing call with a body a web page could send cross-site (text/plain, a form)",
  },
  NOT_FOUND: { code: "NOT_FOUND", status: 404, description: "no such task, machine, job or route" },
  BODY_TOO_LARGE: { code: "BODY_TOO_LARGE", status: 413, description: "the request body is over the limit" },
  UNSUPPORTED_MEDIA_TYPE: {
    code: "UNSUPPORTED_MEDIA_TYPE",
    status: 415,
    description: "the route does not take a body of this content type",
  },
  INTERNAL: { code: "INTERNAL", status: 500, kind: "machine", description: "a bug; see the server log" },

  // A task's upload (POST /tasks).
  NOT_MULTIPART: {
    code: "NOT_MULTIPART",
    status: 415,
    description: "a task is sent as multipart/form-data with an audio file and a video file",
  },
  MISSING_FIELD: { code: "MISSING_FIELD", status: 400, description: "a required form field is missing" },
  UNKNOWN_FIELD: { code: "UNKNOWN_FIELD", status: 400, description: "a form field the API does not know" },
  DUPLICATE_FIELD: { code: "DUPLICATE_FIELD", status: 400, description: "a file field is sent twice" },
  INVALID_FIELD: { code: "INVALID_FIELD", status: 400, description: "a form field has a wrong value" },
  CALLBACK_URL_FORBIDDEN: {
    code: "CALLBACK_URL_FORBIDDEN",
    status: 400,
    description:
      "callback_url points where callbacks may not go (link-local, metadata, the gateway itself, outside --callback-allow)",
  },
  NO_CALLBACK_URL: {
    code: "NO_CALLBACK_URL",
    status: 409,
    description: "a redelivery was asked for a task that has no callback_url",
  },
  MALFORMED_MULTIPART: {
    code: "MALFORMED_MULTIPART",
    status: 400,
    description:
      "a multipart body that cannot be read to its end (no boundary, no closing boundary, a broken part)",
  },
  AUDIO_TOO_LONG: {
    code: "AUDIO_TOO_LONG",
    status: 400,
    kind: "input",
    description: "the audio is longer than --max-audio-seconds (a voice's reference recording: 300 s)",
  },
  QUEUE_FULL: {
    code: "QUEUE_FULL",
    status: 429,
    description: "--max-pending tasks wait already; come back after Retry-After seconds",
  },
  UPLOAD_TIMEOUT: {
    code: "UPLOAD_TIMEOUT",
    status: 408,
    description: "an upload sent nothing for --upload-idle-timeout, or took longer than --upload-timeout",
  },
  INSUFFICIENT_STORAGE: {
    code: "INSUFFICIENT_STORAGE",
    status: 507,
    description: "free disk under the data dir is below --min-free-disk, or the disk is full",
  },
  STORE_UNAVAILABLE: {
    code: "STORE_UNAVAILABLE",
    status: 503,
    description: "the data dir vanished, turned read-only or fails: changes are refused, reads go on",
  },
  EMPTY_FILE: { code: "EMPTY_FILE", status: 400, description: "an uploaded file is empty" },
  FILE_TOO_LARGE: { code: "FILE_TOO_LARGE", status: 413, description: "an uploaded file is over the limit" },
  INVALID_MEDIA: {
    code: "INVALID_MEDIA",
    status: 400,
    kind: "input",
    description: "an upload is not a readable media file, or lacks the stream it must have",
  },
  MEDIA_UNREADABLE: {
    code: "MEDIA_UNREADABLE",
    status: 400,
    kind: "input",
    description: "ffprobe cannot read the file",
  },
  MEDIA_NO_STREAMS: {
    code: "MEDIA_NO_STREAMS",
    status: 400,
    kind: "input",
    description: "the file has no audio or video stream",
  },

  // Avatars (gateway, issue 12).
  UNKNOWN_AVATAR: {
    code: "UNKNOWN_AVATAR",
    status: 400,
    description:
      "a task names an avatar_id that does not exist (or belongs to another key): create it with POST /avatars",
  },
  AVATAR_IN_USE: {
    code: "AVATAR_IN_USE",
    status: 409,
    description:
      "DELETE /avatars/{avatar_id} while a pending or processing task uses it: cancel or await them",
  },
  VIDEO_AND_AVATAR: {
    code: "VIDEO_AND_AVATAR",
    status: 400,
    description: "a task form with both a video file and avatar_id: send one of the two",
  },

  // Voices (gateway and worker, issue 12).
  AUDIO_AND_AVATAR: {
    code: "AUDIO_AND_AVATAR",
    status: 400,
    description: "POST /voices with both an audio file and avatar_id: send one of the two",
  },
  AVATAR_HAS_NO_AUDIO: {
    code: "AVATAR_HAS_NO_AUDIO",
    status: 400,
    description: "POST /voices from an avatar whose video has no sound track to take the voice from",
  },
  VOICE_IN_USE: {
    code: "VOICE_IN_USE",
    status: 409,
    description: "DELETE /voices/{voice_id} while a pending or processing task speaks in it",
  },
  VOICE_REFERENCE_UNUSABLE: {
    code: "VOICE_REFERENCE_UNUSABLE",
    status: 400,
    // The same recording fails on every machine.
    kind: "input",
    description:
      "the voice service cannot use the reference recording: missing, unreadable, or no speech heard in it",
  },
  VOICE_CLONE_UNAVAILABLE: {
    code: "VOICE_CLONE_UNAVAILABLE",
    status: 422,
    // Another machine (capabilities.voice_clone) may do it.
    kind: "machine",
    description:
      "no machine can clone a voice: a worker without fish-speech (--tts), or a gateway whose machines have none",
  },
  VOICE_SERVICE_UNAVAILABLE: {
    code: "VOICE_SERVICE_UNAVAILABLE",
    status: 503,
    kind: "machine",
    description:
      "the voice service (fish-speech, its speech recognition) is down or did not answer in time; " +
      "from the gateway: no machine that can clone is up, or every one failed; try again after Retry-After",
  },

  // Tasks (gateway).
  TASK_NOT_COMPLETED: {
    code: "TASK_NOT_COMPLETED",
    status: 409,
    description: "the task has no result (yet): it is not completed",
  },
  TASK_CANCELLED: {
    code: "TASK_CANCELLED",
    status: 409,
    description: "POST /tasks/sync: the task was cancelled (POST /tasks/{task_id}/cancel) before it finished",
  },
  TASK_FINISHED: {
    code: "TASK_FINISHED",
    status: 409,
    description: "a cancel of a task that is already completed, failed or cancelled",
  },
  TASK_NOT_RETRYABLE: {
    code: "TASK_NOT_RETRYABLE",
    status: 409,
    description: "a retry of a task that is not failed or cancelled",
  },
  INPUTS_DELETED: {
    code: "INPUTS_DELETED",
    status: 410,
    description: "a retry of a task whose input files were deleted (retention): create a new task",
  },
  TASK_FAILED: {
    code: "TASK_FAILED",
    // POST /tasks/sync: 422 when the input was at fault, 502 when no machine could do it.
    status: { input: 422, machine: 502 },
    description: "the task failed; its error_message says why",
  },
  TASK_NOT_FINISHED: {
    code: "TASK_NOT_FINISHED",
    status: 409,
    description: "the task is pending or processing: cancel it first, then delete it",
  },
  RESULT_EXPIRED: {
    code: "RESULT_EXPIRED",
    status: 410,
    description:
      "the task's files (inputs and result) were deleted after --retention; its record stays until --retention-rows",
  },
  SYNC_TIMEOUT: {
    code: "SYNC_TIMEOUT",
    status: 504,
    description: "the task did not finish within the sync timeout; it goes on and can be fetched by id",
  },
  RANGE_NOT_SATISFIABLE: {
    code: "RANGE_NOT_SATISFIABLE",
    status: 416,
    description: "the Range asks for bytes past the end of the file",
  },
  SHUTTING_DOWN: {
    code: "SHUTTING_DOWN",
    status: 503,
    kind: "machine",
    description: "the gateway or worker agent is stopping and takes no new work",
  },

  WORKER_DRAINING: {
    code: "WORKER_DRAINING",
    status: 503,
    // No kind: the machine takes no new work (it was sent SIGTERM), which is not the task's failure.
    // The gateway puts the task back in the queue without counting the attempt.
    description: "the worker agent is draining (stopping): it finishes its jobs and takes no new one",
  },

  // Jobs and blobs (worker protocol, /v1).
  BLOB_MISSING: {
    code: "BLOB_MISSING",
    status: 409,
    // No kind: a step of the protocol. The gateway uploads the blob and asks again.
    description: "the job names an input blob the worker does not hold; upload it first",
  },
  BLOB_HASH_MISMATCH: {
    code: "BLOB_HASH_MISMATCH",
    status: 400,
    // The gateway sends what it hashed itself, so a mismatch is damage in transit.
    kind: "machine",
    description: "the uploaded content does not hash to the sha256 in the URL",
  },
  JOB_CONFLICT: {
    code: "JOB_CONFLICT",
    status: 409,
    kind: "machine",
    description: "a job with this id exists with other inputs, or is being deleted",
  },
  JOB_NOT_FINISHED: {
    code: "JOB_NOT_FINISHED",
    status: 409,
    description: "the job has no result (yet): it has not succeeded",
  },
  TTS_UNAVAILABLE: {
    code: "TTS_UNAVAILABLE",
    status: 422,
    // The machine's fault (it cannot speak): another machine with capabilities.tts may take the job.
    kind: "machine",
    description:
      "a text job (speech) sent to a worker that cannot speak text (/v1/health capabilities.tts false)",
  },

  // Failures of a client of the gateway's own (worker agent, HeyGem container); never sent by a server.
  PROTOCOL_ERROR: {
    code: "PROTOCOL_ERROR",
    status: 502,
    kind: "machine",
    description: "an answer that does not match the protocol's schema (errors.ts, ProtocolError)",
  },
  WORKER_UNREACHABLE: {
    code: "WORKER_UNREACHABLE",
    status: 502,
    kind: "machine",
    description: "the worker agent could not be reached: refused, reset or timed out",
  },
  HEYGEM_UNREACHABLE: {
    code: "HEYGEM_UNREACHABLE",
    status: 502,
    kind: "machine",
    description: "the HeyGem container could not be reached: refused, reset or timed out",
  },
} as const satisfies Readonly<Record<string, ErrorSpec>>;

export type ErrorCode = keyof typeof ERROR_CODES;

// Every entry's `code` is its key: a line copied to make a new code cannot keep the old one.
ERROR_CODES satisfies { readonly [C in ErrorCode]: { readonly code: C } };

/** The codes whose answers always have status `S` (e.g. `ConflictError` takes the 409 ones). */
export type ErrorCodeWithStatus<S extends number> = {
  [C in ErrorCode]: (typeof ERROR_CODES)[C]["status"] extends S ? C : never;
}[ErrorCode];

/** Whether a code read from the wire is one of the catalogue's (a newer peer may send others). */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

export function httpStatus(code: ErrorCode, kind: FailureKind = "machine"): number {
  const { status } = ERROR_CODES[code];
  return typeof status === "number" ? status : status[kind];
}

/** Whose fault a code read from the wire is; undefined for codes that end no attempt, or unknown ones. */
export function failureKindOf(code: string): FailureKind | undefined {
  if (!isErrorCode(code)) return undefined;
  const spec: ErrorSpec = ERROR_CODES[code];
  return spec.kind;
}

export const ErrorBody = Type.Object(
  {
    error: Type.String({
      description: "Stable machine-readable code, e.g. NOT_FOUND (the catalogue: src/error-codes.ts)",
    }),
    message: Type.String({ description: "A sentence for people" }),
    field: Type.Optional(Type.String({ description: "The request field at fault, when there is one" })),
  },
  { $id: "ErrorBody", title: "Error" },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** The JSON body of an error answer (house-style.md: `{ error, message, field? }`). */
export function errorBody(code: ErrorCode, message: string, field?: string): ErrorBody {
  return field === undefined ? { error: code, message } : { error: code, message, field };
}
