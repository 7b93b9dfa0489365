import type { FastifyRequest } from "fastify";
import type { EventRow, TaskRow } from "../../store/schema.js";
import { maskUrl } from "../callbacks/mask-url.js";
import type { TaskView } from "./schemas.js";

/** The public view of a task row; `result_url` is absolute when the request tells us our address. */
export function toTaskView(task: TaskRow, request?: FastifyRequest): TaskView {
  const path = `/tasks/${task.id}/result`;
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
    result_url: request ? `${request.protocol}://${request.host}${path}` : path,
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
