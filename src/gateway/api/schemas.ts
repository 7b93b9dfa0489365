/**
 * The public REST API's shapes: TypeBox gives the response serialisers, the static types and the
 * OpenAPI document from one definition.
 */
import { type SchemaOptions, type Static, type TSchema, Type } from "@sinclair/typebox";
import { DEFAULT_SPEECH_LANG, ErrorBody, SPEECH_LANG_PATTERN } from "../../protocol/schemas.js";

export { ErrorBody };

/**
 * A value or null, as OpenAPI 3.0 says it (`nullable: true`). Also what keeps responses fast:
 * for a `[T, null]` union the serializer would run a validator on every value to pick a branch.
 */
const Nullable = <T extends TSchema>(schema: T, options: SchemaOptions = {}) =>
  Type.Unsafe<Static<T> | null>({
    ...schema,
    ...options,
    nullable: true,
    // OpenAPI 3.0.3: an enum of a nullable value lists null too, or null is not one of its values.
    ...(Array.isArray(schema.enum) ? { enum: [...schema.enum, null] } : {}),
  });

export const TaskStatus = Type.Union(
  [
    Type.Literal("pending"),
    Type.Literal("processing"),
    Type.Literal("completed"),
    Type.Literal("failed"),
    Type.Literal("cancelled"),
  ],
  {
    description:
      "pending: queued; processing: on a machine; completed: result ready; failed: see error_message; " +
      "cancelled: stopped by POST /tasks/{task_id}/cancel (failed and cancelled tasks can be retried)",
  },
);

export const TaskView = Type.Object(
  {
    task_id: Type.String({ format: "uuid" }),
    status: TaskStatus,
    description: Nullable(Type.String()),
    created_at: Type.String({ format: "date-time" }),
    started_at: Nullable(Type.String({ format: "date-time" })),
    completed_at: Nullable(Type.String({ format: "date-time" })),
    machine: Nullable(Type.String(), {
      description: "Machine of the current or last attempt",
    }),
    progress: Type.Integer({ minimum: 0, maximum: 100 }),
    error_message: Nullable(Type.String()),
    error_kind: Nullable(Type.Unsafe<"input" | "machine">({ type: "string", enum: ["input", "machine"] }), {
      description: "input: the files are at fault, retrying will not help; machine: no machine could do it",
    }),
    result_url: Type.String({
      description: "Where the MP4 will be once completed (GET answers 409 before that)",
    }),
    attempts: Type.Integer({ minimum: 0, description: "Machines tried so far" }),
    priority: Type.Integer(),
    audio_duration: Type.Number({ description: "Seconds; the output video is this long" }),
    audio_name: Type.String({ description: "The audio's file name as uploaded" }),
    audio_bytes: Type.Integer({ minimum: 0 }),
    video_name: Type.String({ description: "The video's file name as uploaded (or the avatar's)" }),
    video_bytes: Type.Integer({ minimum: 0 }),
    callback_url: Nullable(Type.String()),
    owner: Nullable(Type.String(), {
      description: "Name of the API key that created the task; null when it was created without keys",
    }),
    files_deleted_at: Nullable(Type.String({ format: "date-time" }), {
      description:
        "When the task's inputs and result were deleted (--retention); from then on result_url answers " +
        "410 RESULT_EXPIRED. Null while they are kept",
    }),
    avatar_id: Nullable(Type.String(), {
      description:
        "The avatar whose video the task uses (form field avatar_id); null when it uploaded a video",
    }),
  },
  { $id: "Task", title: "Task" },
);
export type TaskView = Static<typeof TaskView>;

export const TaskList = Type.Object(
  {
    tasks: Type.Array(Type.Ref(TaskView)),
    total: Type.Integer({ description: "Tasks matching the filter, over all pages" }),
    limit: Type.Integer(),
    offset: Type.Integer(),
    next_before: Nullable(Type.Integer(), {
      description:
        "Pass as `before` for the next page (quick at any depth, unlike offset); null on the last page",
    }),
  },
  { $id: "TaskList", title: "TaskList" },
);

export const TaskEvent = Type.Object(
  {
    id: Type.Integer(),
    at: Type.String({ format: "date-time" }),
    type: Type.String({
      description:
        "created, queued, dispatched, progress, requeued, completed, failed, cancelled or retried; waiting (no status change) when the last machine stopped taking work while the task was pending",
    }),
    from_status: Nullable(Type.String()),
    to_status: Nullable(Type.String()),
    machine: Nullable(Type.String()),
    attempt_id: Nullable(Type.String()),
    progress: Nullable(Type.Integer()),
    message: Nullable(Type.String()),
  },
  { $id: "TaskEvent", title: "TaskEvent" },
);

export const TaskEvents = Type.Object(
  { task_id: Type.String(), events: Type.Array(Type.Ref(TaskEvent)) },
  { $id: "TaskEvents", title: "TaskEvents" },
);

export const TaskIdParams = Type.Object({ task_id: Type.String({ description: "As returned on creation" }) });

export const ListQuery = Type.Object({
  status: Type.Optional(TaskStatus),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  // Bounded: an unbounded integer lets 1e400 (Infinity) or 1e20 through to SQLite, a 500 (issue 9).
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }),
  before: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: "The previous page's next_before: the next page, read from the index however deep it is",
    }),
  ),
});

export const StreamQuery = Type.Object({
  last_event_id: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: "Resume after this event (as the Last-Event-ID header, which wins when both are sent)",
    }),
  ),
});

const binary = (description: string) => Type.String({ format: "binary", description });
const bit = (description: string) => Type.Union([Type.Literal("0"), Type.Literal("1")], { description });

/**
 * The multipart form, for the OpenAPI document only: the handler reads the stream itself so that
 * files go to disk instead of memory. Both spellings of the seed's clients are accepted.
 */
export const TaskForm = Type.Object(
  {
    audio: Type.Optional(binary("Driving audio (wav, mp3, m4a, flac…). Also accepted as `audio_file`.")),
    audio_file: Type.Optional(binary("Same as `audio`.")),
    video: Type.Optional(binary("Template video of one person (mp4, mov…). Also accepted as `video_file`.")),
    video_file: Type.Optional(binary("Same as `video`.")),
    avatar_id: Type.Optional(
      Type.String({
        description:
          "An avatar (POST /avatars) whose video the task uses, in place of a video file: the upload is then " +
          "the audio alone. Sending both is 400 VIDEO_AND_AVATAR; an unknown id (or another key's) is 400 " +
          "UNKNOWN_AVATAR, field avatar_id",
      }),
    ),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    callback_url: Type.Optional(
      Type.String({
        format: "uri",
        description:
          "Gets a signed POST of JSON on every status change of the task (see the callbacks of this " +
          "operation). Not an address of the gateway itself, nor a link-local, metadata, unspecified, " +
          "multicast or broadcast one: those are refused (400 CALLBACK_URL_FORBIDDEN).",
      }),
    ),
    priority: Type.Optional(
      Type.Integer({
        description: "Higher goes first; default 0. A submit key may set at most 10 (403 above)",
      }),
    ),
    chaofen: Type.Optional(bit("HeyGem super-resolution pass; default 0")),
    watermark_switch: Type.Optional(bit("HeyGem watermark; default 0")),
    pn: Type.Optional(
      bit("1 (default): loop the video forward then backward when the audio is longer; 0: restart it"),
    ),
  },
  {
    description: "One audio file, and one video file or an avatar_id, are required",
    example: {
      description: "product demo, take 3",
      callback_url: "https://app.example.com/hooks/heygem",
      priority: 0,
      pn: "1",
    },
  },
);

export const SyncFailure = Type.Object(
  {
    error: Type.String({ description: "TASK_FAILED, TASK_CANCELLED or SYNC_TIMEOUT" }),
    message: Type.String(),
    task_id: Type.String(),
  },
  { $id: "SyncFailure", title: "SyncFailure" },
);

/** 503 of POST /tasks/sync: the gateway stops (the task is kept) or cannot store anything. */
export const SyncUnavailable = Type.Object(
  {
    error: Type.String({
      description:
        "SHUTTING_DOWN: the gateway stopped while the task ran (the task is kept, with its task_id, also in " +
        "X-Task-Id: fetch it by id), or it was stopping before the upload (nothing was stored, see " +
        "Retry-After); STORE_UNAVAILABLE (nothing was stored)",
    }),
    message: Type.String(),
    task_id: Type.Optional(Type.String()),
  },
  { $id: "SyncUnavailable", title: "SyncUnavailable" },
);

export const MachineView = Type.Object(
  {
    name: Type.String(),
    host: Type.String(),
    port: Type.Integer(),
    state: Type.Union(
      [
        Type.Literal("unknown"),
        Type.Literal("up"),
        Type.Literal("down"),
        Type.Literal("draining"),
        Type.Literal("disabled"),
      ],
      {
        description:
          "unknown until the first probe; down while its circuit is open; draining when the operator drains it " +
          "or its agent is stopping",
      },
    ),
    enabled: Type.Boolean(),
    draining: Type.Boolean({ description: "Drained by the operator (POST /machines/{name}/drain)" }),
    agent_draining: Type.Boolean({
      description:
        "Its agent is stopping (it was sent SIGTERM): it finishes its jobs and takes no new one; a restart ends it",
    }),
    running: Type.Integer({ description: "Attempts on it now" }),
    held: Type.Integer({
      description:
        "Slots still busy with cancelled jobs' renders (a HeyGem container cannot stop one): no new work " +
        "goes there until they end",
    }),
    max_concurrent: Type.Integer({ description: "As machines.json says" }),
    capacity: Type.Integer({
      description: "Slots in use for new work: max_concurrent, or fewer when the agent reports fewer",
    }),
    warnings: Type.Array(Type.String(), {
      description: "Configuration the operator should look at, e.g. an agent with fewer slots than listed",
    }),
    tasks_done: Type.Integer(),
    tasks_failed: Type.Integer(),
    speed: Nullable(Type.Number(), {
      description: "Measured engine seconds per second of audio (null until a job finished there)",
    }),
    speed_samples: Type.Integer(),
    last_error: Nullable(Type.String()),
    last_seen: Nullable(Type.String({ format: "date-time" })),
    consecutive_failures: Type.Integer(),
    engine: Nullable(Type.String()),
    version: Nullable(Type.String()),
    free_disk_bytes: Nullable(Type.Integer()),
    containers: Type.Array(
      Type.Object({
        name: Type.String(),
        reachable: Type.Boolean(),
        healthy: Type.Boolean({ description: "false after a machine-class failure, until it answers again" }),
        busy: Type.Boolean(),
        job: Nullable(Type.String({ description: "The job it works on" })),
        last_error: Nullable(Type.String()),
      }),
      {
        description:
          "The engine's backends one by one as the agent last reported them (a HeyGem machine's containers); empty for single-backend engines",
      },
    ),
  },
  { $id: "Machine", title: "Machine" },
);

export const MachineList = Type.Object(
  {
    machines: Type.Array(Type.Ref(MachineView)),
    config: Type.Union(
      [
        Type.Object({
          file: Type.String(),
          loaded_at: Type.String({
            format: "date-time",
            description: "When the configuration in force was read",
          }),
          rejected_at: Nullable(Type.String({ format: "date-time" })),
          error: Nullable(Type.String(), {
            description: "Why the file's current content was refused (the last good configuration stays)",
          }),
        }),
        Type.Null(),
      ],
      { description: "The machines file, watched for edits; null without one" },
    ),
  },
  { $id: "MachineList", title: "MachineList" },
);

export const CallbackTryView = Type.Object(
  {
    at: Type.String({ format: "date-time", description: "When the try started" }),
    duration_ms: Type.Integer({ minimum: 0 }),
    http_status: Nullable(Type.Integer(), { description: "The receiver's answer; null when none came" }),
    error: Nullable(Type.String(), {
      description:
        "Why the try failed (refused, unreachable, past the deadline, non-2xx); null when delivered",
    }),
  },
  { $id: "CallbackTry", title: "CallbackTry" },
);

export const CallbackDeliveryView = Type.Object(
  {
    id: Type.Integer(),
    webhook_id: Nullable(Type.String(), {
      description: "The webhook-id header: the same on every try of this delivery",
    }),
    event: Nullable(
      Type.String({ description: "The status change it reports: queued, dispatched, completed…" }),
    ),
    status: Nullable(
      Type.Unsafe<Static<typeof TaskStatus>>({
        type: "string",
        enum: ["pending", "processing", "completed", "failed", "cancelled"],
      }),
      { description: "The task's status it reports" },
    ),
    state: Type.Unsafe<"pending" | "delivered" | "given_up">({
      type: "string",
      enum: ["pending", "delivered", "given_up"],
      description: "pending: waiting for its (next) try; delivered: a 2xx came back; given_up: no more tries",
    }),
    created_at: Type.String({ format: "date-time" }),
    next_try_at: Nullable(Type.String({ format: "date-time" }), { description: "While pending" }),
    last_error: Nullable(Type.String()),
    tries: Type.Array(Type.Ref(CallbackTryView)),
  },
  { $id: "CallbackDelivery", title: "CallbackDelivery" },
);
export type CallbackDeliveryView = Static<typeof CallbackDeliveryView>;

export const TaskCallbacks = Type.Object(
  {
    task_id: Type.String(),
    callback_url: Nullable(Type.String(), { description: "Credentials and query string masked as ***" }),
    deliveries: Type.Array(Type.Ref(CallbackDeliveryView)),
  },
  { $id: "TaskCallbacks", title: "TaskCallbacks" },
);

/** What a task's callback_url receives: the JSON body of each status change's POST. */
export const CallbackPayload = Type.Object(
  {
    task_id: Type.String({ format: "uuid" }),
    status: TaskStatus,
    completed_at: Nullable(Type.String({ format: "date-time" })),
    error_message: Nullable(Type.String()),
    description: Nullable(Type.String()),
    created_at: Type.String({ format: "date-time" }),
    started_at: Nullable(Type.String({ format: "date-time" })),
    machine: Nullable(Type.String()),
    progress: Type.Integer({ minimum: 0, maximum: 100 }),
    event: Type.String({
      description: "The step: queued, dispatched, requeued, completed, failed, cancelled or retried",
    }),
    event_id: Type.Integer({ description: "The step's id in GET /tasks/{task_id}/events" }),
    at: Type.String({ format: "date-time", description: "When the step happened" }),
    result_url: Type.Optional(
      Type.String({ description: "Only on completed: the MP4's absolute URL (the gateway's --public-url)" }),
    ),
  },
  { $id: "CallbackPayload", title: "CallbackPayload" },
);

/**
 * The callback, as an OpenAPI 3 `callbacks` entry of the routes that take a callback_url. Its
 * headers cannot be declared there (the generator takes a body and responses only), so the
 * description names them.
 */
export const StatusCallback = {
  statusChange: {
    "{$request.body#/callback_url}": {
      post: {
        requestBody: {
          description:
            "POSTed on every status change of the task. Headers (Standard Webhooks): webhook-id (the " +
            "same on every try of one delivery), webhook-timestamp (Unix seconds of the try) and, when the " +
            'gateway has --callback-secret, webhook-signature: "v1," + base64 HMAC-SHA256 of ' +
            '"{webhook-id}.{webhook-timestamp}.{body}". Credentials in the URL are sent as Basic ' +
            "authentication. Any 2xx answer within --callback-timeout is a delivery; anything else is " +
            "tried again (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).",
          content: { "application/json": { schema: Type.Ref(CallbackPayload) } },
        },
        responses: { "2XX": { description: "Delivered" } },
      },
    },
  },
};

export const BulkCancelQuery = Type.Object({
  status: Type.Literal("pending", {
    description: "Which tasks to cancel; only pending (the queue) for now",
  }),
});

export const BulkCancelResult = Type.Object(
  { cancelled: Type.Integer({ minimum: 0, description: "Tasks cancelled by this call" }) },
  { $id: "BulkCancelResult", title: "BulkCancelResult" },
);

/** A template video kept under an id (issue 12): tasks name it with avatar_id and upload only audio. */
export const AvatarView = Type.Object(
  {
    avatar_id: Type.String({ format: "uuid", description: "What a task's avatar_id form field names" }),
    name: Nullable(Type.String(), { description: "As given on creation" }),
    sha256: Type.String({
      description: "Content hash of the video; the same video uploaded twice shares it",
    }),
    bytes: Type.Integer({ minimum: 1 }),
    duration: Type.Number({ description: "Seconds" }),
    width: Type.Integer(),
    height: Type.Integer(),
    fps: Type.Number({ description: "Frames per second; 0 when the file does not say" }),
    owner: Nullable(Type.String(), {
      description: "Name of the API key that created it; null when it was created without keys",
    }),
    created_at: Type.String({ format: "date-time" }),
    machines: Type.Array(Type.String(), {
      description:
        "Machines believed to hold the video now (a worker's input cache may have dropped it since: it is " +
        "then sent again when a task needs it)",
    }),
    warming: Type.Optional(
      Type.Array(Type.String(), {
        description: "On creation with warm=true: the machines the video is being sent to now",
      }),
    ),
  },
  { $id: "Avatar", title: "Avatar" },
);
export type AvatarView = Static<typeof AvatarView>;

export const AvatarList = Type.Object(
  {
    avatars: Type.Array(Type.Ref(AvatarView)),
    total: Type.Integer({ description: "Avatars visible to the key, over all pages" }),
    limit: Type.Integer(),
    offset: Type.Integer(),
  },
  { $id: "AvatarList", title: "AvatarList" },
);

export const AvatarWarming = Type.Object(
  {
    avatar_id: Type.String({ format: "uuid" }),
    sending: Type.Array(Type.String(), {
      description: "Up machines that lack the video: it is on its way to each, in the background",
    }),
    holding: Type.Array(Type.String(), { description: "Up machines that hold it already" }),
  },
  { $id: "AvatarWarming", title: "AvatarWarming" },
);

export const AvatarIdParams = Type.Object({
  avatar_id: Type.String({ description: "As returned by POST /avatars" }),
});

export const AvatarListQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }),
});

/** The multipart form of POST /avatars, for the OpenAPI document only (the handler streams it). */
export const AvatarForm = Type.Object(
  {
    video: binary("Template video of one person (mp4, mov…). Also accepted as `video_file`."),
    video_file: Type.Optional(binary("Same as `video`.")),
    name: Type.Optional(
      Type.String({ maxLength: 200, description: "Anything that helps you find it again" }),
    ),
    warm: Type.Optional(
      Type.Union([Type.Literal("true"), Type.Literal("false"), Type.Literal("1"), Type.Literal("0")], {
        description: "true: send the video to every up machine now, as POST /avatars/{avatar_id}/warm does",
      }),
    ),
  },
  { description: "One video file is required", example: { name: "Lin, studio take", warm: "true" } },
);

/**
 * Longest reference recording a voice takes (POST /voices), and what is taken of an avatar's sound
 * track. Cloning needs seconds of clear speech (10–30 s is plenty); the machine's speech
 * recognition listens to all of it within fish-speech's 180 s deadline, and its transcript goes
 * with every text job in the voice. Five minutes keeps both small and still takes any sane take.
 */
export const VOICE_REFERENCE_MAX_SECONDS = 300;

/**
 * A cloned voice (issue 12): a reference recording the gateway keeps, prepared on a machine that
 * can clone when it was made. Text tasks name it with voice_id.
 */
export const VoiceView = Type.Object(
  {
    voice_id: Type.String({ format: "uuid", description: "What a text task's voice_id names" }),
    name: Nullable(Type.String(), { description: "As given on creation" }),
    lang: Type.String({ description: "The language spoken in the recording (fish-speech's lang)" }),
    sha256: Type.String({ description: "Content hash of the reference recording the gateway keeps" }),
    bytes: Type.Integer({ minimum: 1 }),
    duration: Type.Number({ description: "Seconds of the reference recording" }),
    reference_text: Nullable(Type.String(), {
      description: "What the voice service heard in the recording, when the voice was prepared",
    }),
    avatar_id: Nullable(Type.String(), {
      description: "The avatar whose sound track the voice was taken from; null for an uploaded recording",
    }),
    owner: Nullable(Type.String(), {
      description: "Name of the API key that created it; null when it was created without keys",
    }),
    created_at: Type.String({ format: "date-time" }),
  },
  { $id: "Voice", title: "Voice" },
);
export type VoiceView = Static<typeof VoiceView>;

export const VoiceList = Type.Object(
  {
    voices: Type.Array(Type.Ref(VoiceView)),
    total: Type.Integer({ description: "Voices visible to the key, over all pages" }),
    limit: Type.Integer(),
    offset: Type.Integer(),
  },
  { $id: "VoiceList", title: "VoiceList" },
);

export const VoiceIdParams = Type.Object({
  voice_id: Type.String({ description: "As returned by POST /voices" }),
});

export const VoiceListQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }),
});

/** The multipart form of POST /voices, for the OpenAPI document only (the handler streams it). */
export const VoiceForm = Type.Object(
  {
    audio: Type.Optional(
      binary(
        `A recording of the voice (wav, mp3, m4a…; at most ${VOICE_REFERENCE_MAX_SECONDS} s; 10–30 s of clear ` +
          "speech is plenty). " +
          "Also accepted as `audio_file`. Or leave it out and send avatar_id.",
      ),
    ),
    audio_file: Type.Optional(binary("Same as `audio`.")),
    avatar_id: Type.Optional(
      Type.String({
        description: `An avatar (POST /avatars) whose video's sound track becomes the recording (its first ${VOICE_REFERENCE_MAX_SECONDS} s)`,
      }),
    ),
    name: Type.Optional(
      Type.String({ maxLength: 200, description: "Anything that helps you find it again" }),
    ),
    lang: Type.Optional(
      Type.String({
        pattern: SPEECH_LANG_PATTERN,
        default: DEFAULT_SPEECH_LANG,
        description: "The language spoken in the recording (fish-speech's lang: zh, en, ja…)",
      }),
    ),
  },
  {
    description: "One audio file or an avatar_id is required",
    example: { avatar_id: "9a1d5c3e-2b7f-4e6a-8c90-1f2e3d4c5b6a", name: "Lin's voice", lang: "zh" },
  },
);
