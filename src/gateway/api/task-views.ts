import type { FastifyRequest } from "fastify";
import type { EventRow, TaskRow } from "../../store/schema.js";
import { decodeTaskSpeech } from "../../store/task-speech.js";
import { maskUrl } from "../callbacks/mask-url.js";
import type { TaskView } from "./schemas.js";

/** The public view of a task row; its URLs are absolute when the request tells us our address. */
export function toTaskView(task: TaskRow, request?: FastifyRequest): TaskView {
  const base = request ? `${request.protocol}://${request.host}` : "";
  return {
    task_id: task.id,
    status: task.status,
    description: task.description,
    created_at: task.created_at,
    started_at: task.started_at,
    completed_at: task.completed_at,
    machine: task.machine,
    progress: task.progress,
    error_message: task.error_message,
    error_kind: task.error_kind === "input" || task.error_kind === "machine" ? task.error_kind : null,
    result_url: `${base}/tasks/${task.id}/result`,
    audio_url: `${base}/tasks/${task.id}/audio`,
    attempts: task.attempts,
    priority: task.priority,
    audio_duration: task.audio_duration,
    audio_name: task.audio_name,
    audio_bytes: task.audio_bytes,
    video_name: task.video_name,
    video_bytes: task.video_bytes,
    callback_url: task.callback_url === null ? null : maskUrl(task.callback_url),
    owner: task.owner,
    files_deleted_at: task.files_deleted_at,
    avatar_id: task.avatar_id,
    speech: speechView(task),
  };
}

/** A text task's speech (issue 12); null for a task that uploaded its audio. */
function speechView(task: TaskRow): TaskView["speech"] {
  const speech = decodeTaskSpeech(task.speech);
  if (!speech) return null;
  return {
    text: speech.text,
    lang: speech.lang,
    voice_id: task.voice_id,
    settings: speech.settings,
    spoken: task.audio_sha256 !== "",
  };
}

export function toEventView(e: EventRow) {
  return {
    id: e.id,
    at: e.at,
    type: e.type,
    from_status: e.from_status,
    to_status: e.to_status,
    machine: e.machine,
    attempt_id: e.attempt_id,
    progress: e.progress,
    message: e.message,
  };
}
