/**
 * Row types of the store, as Kysely sees them. Times are ISO-8601 UTC strings (they sort as text
 * and read well in `sqlite3`); JSON columns are text.
 */
import type { Generated, Insertable, Selectable } from "kysely";

/** Every status a task can have; anything that enumerates them (metrics, views) reads this list. */
export const TASK_STATUSES = ["pending", "processing", "completed", "failed", "cancelled"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export function isTaskStatus(value: string): value is TaskStatus {
  return (TASK_STATUSES as readonly string[]).includes(value);
}
export const FINAL_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(["completed", "failed", "cancelled"]);
/** Final statuses `POST /tasks/{id}/retry` takes back to `pending`. */
export const RETRYABLE_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(["failed", "cancelled"]);

/** `cancelled`: the client cancelled the task while this attempt ran; its result is never used. */
export type AttemptStatus = "dispatching" | "running" | "succeeded" | "failed" | "abandoned" | "cancelled";
export const LIVE_ATTEMPT_STATUSES: readonly AttemptStatus[] = ["dispatching", "running"];

export interface TasksTable {
  id: string;
  /** Arrival order; breaks ties between tasks created in the same millisecond. */
  seq: number;
  status: TaskStatus;
  description: string | null;
  callback_url: string | null;
  priority: number;
  options: string;
  audio_sha256: string;
  audio_name: string;
  audio_bytes: number;
  audio_duration: number;
  video_sha256: string;
  video_name: string;
  video_bytes: number;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  updated_at: string;
  machine: string | null;
  progress: number;
  error_message: string | null;
  error_kind: string | null;
  /** The attempt whose outcome counts; any other attempt's report is ignored (fencing). */
  current_attempt: string | null;
  attempts: number;
  result_sha256: string | null;
  result_bytes: number | null;
  /** Name of the API key that created the task; null when created without keys. */
  owner: string | null;
  /** When retention (or DELETE) removed the task's blobs; null while they are kept. */
  files_deleted_at: string | null;
  /** The avatar whose video the task uses (issue 12); null when the video was uploaded with it. */
  avatar_id: string | null;
  /**
   * A text task's speech (issue 12), JSON `{text, lang, settings}`; null for a task that uploaded
   * its audio. Until the text is spoken such a task has no audio: `audio_sha256` and `audio_name`
   * are empty, `audio_bytes` 0 and `audio_duration` an estimate from the text's length; the
   * attempt that completes it stores the spoken audio there, so retention and
   * `GET /tasks/{id}/audio` treat it as any task's audio.
   */
  speech: string | null;
  /** The voice a text task speaks in (issue 12); null for the machine's own voice. */
  voice_id: string | null;
}

export interface AttemptsTable {
  id: string;
  task_id: string;
  machine: string;
  status: AttemptStatus;
  created_at: string;
  ended_at: string | null;
  error_kind: string | null;
  error_message: string | null;
  run_seconds: number | null;
}

export interface EventsTable {
  id: Generated<number>;
  task_id: string;
  at: string;
  type: string;
  from_status: string | null;
  to_status: string | null;
  machine: string | null;
  attempt_id: string | null;
  progress: number | null;
  message: string | null;
}

export interface CallbacksTable {
  id: Generated<number>;
  task_id: string;
  event_id: number;
  url: string;
  payload: string;
  state: "pending" | "delivered" | "given_up";
  tries: number;
  next_at: string;
  last_error: string | null;
  created_at: string;
  /** Standard Webhooks' `webhook-id`; null only on rows written before it existed. */
  webhook_id: string | null;
}

/** One try of a callback delivery: when, how long, and what came of it. */
export interface CallbackTriesTable {
  id: Generated<number>;
  callback_id: number;
  task_id: string;
  at: string;
  duration_ms: number;
  /** The receiver's answer; null when none came (refused, unreachable, past the deadline). */
  http_status: number | null;
  error: string | null;
}

/** Operator decisions about a machine that must outlive a gateway restart. */
export interface MachineFlagsTable {
  name: string;
  draining: number;
  updated_at: string;
}

/** How many tasks an owner ('' for none) has in a status, kept as they change (task-totals.ts). */
export interface TaskTotalsTable {
  owner: string;
  status: TaskStatus;
  n: number;
}

/** A machine's attempts that succeeded and failed, kept as they end (machine-totals.ts). */
export interface MachineTotalsTable {
  machine: string;
  done: number;
  failed: number;
}

/** The dispatching gateway's term (one row, id 1): its epoch fences slot claims (issue 13). */
export interface DispatcherTermTable {
  id: number;
  epoch: number;
  /** Who holds it, for logs and GET /health: "host pid N". */
  gateway: string;
  started_at: string;
}

/** The dispatching gateway's GET /machines, for the other gateways (one row, id 1; JSON). */
export interface FleetViewTable {
  id: number;
  gateway: string;
  epoch: number;
  published_at: string;
  machines: string;
}

/** A blob's media facts (a `MediaInfo` as JSON), keyed by its content hash. */
export interface MediaFactsTable {
  sha256: string;
  facts: string;
  /** Who measured it: `header` (read in process) or `ffprobe`. */
  source: "header" | "ffprobe";
  created_at: string;
}

/** A template video kept under a name, for tasks that send only their audio (issue 12). */
export interface AvatarsTable {
  id: string;
  /** Creation order: the list's order, and its tie-breaker within one millisecond. */
  seq: number;
  /** Name of the API key that created it; null when created without keys. */
  owner: string | null;
  name: string | null;
  sha256: string;
  /** The uploaded file's (sanitised) name: the video name of the tasks made from it. */
  file_name: string;
  bytes: number;
  duration: number;
  width: number;
  height: number;
  fps: number;
  created_at: string;
}

/** A cloned voice (issue 12): a reference recording the gateway keeps so any machine can prepare it. */
export interface VoicesTable {
  id: string;
  /** Creation order: the list's order, and its tie-breaker within one millisecond. */
  seq: number;
  /** Name of the API key that created it; null when created without keys. */
  owner: string | null;
  name: string | null;
  /** The language of the reference recording and of the texts spoken in it by default. */
  lang: string;
  /** The reference recording's blob. */
  sha256: string;
  file_name: string;
  bytes: number;
  duration: number;
  /** What is said in the recording, as the first machine that prepared the voice heard it. */
  reference_text: string | null;
  /** The avatar whose sound track the recording was taken from; null for an uploaded recording. */
  avatar_id: string | null;
  created_at: string;
}

export interface Database {
  tasks: TasksTable;
  attempts: AttemptsTable;
  events: EventsTable;
  callbacks: CallbacksTable;
  callback_tries: CallbackTriesTable;
  machine_flags: MachineFlagsTable;
  machine_totals: MachineTotalsTable;
  task_totals: TaskTotalsTable;
  media_facts: MediaFactsTable;
  avatars: AvatarsTable;
  voices: VoicesTable;
  dispatcher_term: DispatcherTermTable;
  fleet_view: FleetViewTable;
}

export type TaskRow = Selectable<TasksTable>;
export type NewTask = Insertable<TasksTable>;
export type AvatarRow = Selectable<AvatarsTable>;
export type VoiceRow = Selectable<VoicesTable>;
export type AttemptRow = Selectable<AttemptsTable>;
export type EventRow = Selectable<EventsTable>;
export type CallbackRow = Selectable<CallbacksTable>;
export type CallbackTryRow = Selectable<CallbackTriesTable>;
