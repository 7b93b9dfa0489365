import { extname } from "node:path";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { BlobStore } from "../../blobs/blob-store.js";
import { AppError, ConflictError } from "../../errors.js";
import { sendFile } from "../../http/send-file.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import type { TaskRow } from "../../store/schema.js";
import type { TaskStore } from "../../store/task-store.js";
import { visibleTask } from "../auth/access-control.js";
import { ErrorBody, TaskIdParams } from "./schemas.js";

export interface TaskAudioRoutesOptions {
  store: TaskStore;
  blobs: BlobStore;
}

/** The media type of an audio file by its extension; the worker speaks WAV. */
const AUDIO_TYPES: Readonly<Record<string, string>> = {
  ".wav": "audio/wav",
  ".mp3": "audio/mpeg",
  ".m4a": "audio/mp4",
  ".aac": "audio/aac",
  ".flac": "audio/flac",
  ".ogg": "audio/ogg",
  ".opus": "audio/ogg",
  ".webm": "audio/webm",
};

/**
 * `GET /tasks/{task_id}/audio` (issue 12): what a task's video says. For a text task, the WAV a
 * machine spoke, kept with the task once it completed (TaskStore.completeAttempt), so a user can
 * hear what went to the lip-sync; for any other task, the audio it uploaded.
 */
export async function taskAudioRoutes(app: FastifyInstance, options: TaskAudioRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, blobs } = options;

  const audio = async (request: FastifyRequest<{ Params: { task_id: string } }>, reply: FastifyReply) => {
    const task = await visibleTask(store, request, request.params.task_id);
    if (task.audio_sha256 === "") throw notSpoken(task);
    if (task.files_deleted_at !== null) {
      throw new AppError(
        "RESULT_EXPIRED",
        `the files of task ${task.id}, its audio with them, were deleted at ${task.files_deleted_at} (--retention); the task's record remains`,
      );
    }
    const ext = extname(task.audio_name).toLowerCase();
    return sendFile(request, reply, blobs.path(task.audio_sha256), {
      contentType: AUDIO_TYPES[ext] ?? "application/octet-stream",
      downloadName: `${task.id}${/^\.[a-z0-9]{1,8}$/.test(ext) ? ext : ""}`,
    });
  };
  const schema = {
    summary: "The task's audio: uploaded, or spoken from its text (Range requests supported)",
    description:
      "For a text task, the WAV the machine spoke (audio/wav), once the task is completed; for any other " +
      "task, the audio file it uploaded, with the media type of its extension.",
    tags: ["tasks"],
    params: TaskIdParams,
    produces: ["audio/wav", "audio/mpeg", "application/octet-stream"],
    response: {
      200: Type.String({ format: "binary", description: "The audio" }),
      206: Type.String({ format: "binary", description: "The requested byte range" }),
      404: Type.Ref(ErrorBody),
      409: {
        ...Type.Ref(ErrorBody),
        description: "AUDIO_NOT_READY: a text task whose text is not spoken yet (it is kept once completed)",
      },
      410: { ...Type.Ref(ErrorBody), description: "RESULT_EXPIRED: deleted after --retention" },
      416: Type.Ref(ErrorBody),
    },
  };
  const config = { access: "submit" } as const;
  api.get("/tasks/:task_id/audio", { schema, config, exposeHeadRoute: false }, audio);
  // Answered, not listed: the document shows one HEAD, the result's (openapi.test.ts).
  api.head("/tasks/:task_id/audio", { schema: { ...schema, hide: true }, config }, audio);
}

function notSpoken(task: TaskRow): ConflictError {
  const over = task.status === "failed" || task.status === "cancelled";
  return new ConflictError(
    "AUDIO_NOT_READY",
    over
      ? `task ${task.id} is ${task.status}: its text was not spoken, so it has no audio`
      : `the text of task ${task.id} is not spoken yet (${task.status}); its audio is kept once the task completes`,
  );
}
