/**
 * An example of every shared schema of the API, keyed by its `$id`, for the OpenAPI document (code
 * generators and Swagger UI show them). A test validates each against its schema, so they cannot
 * drift from what the API sends.
 */
const TASK_ID = "3f6c2a1e-8b4d-4c7a-9e21-5d0f7b3a9c64";
const CREATED = "2026-11-28T09:00:00.000Z";
const AVATAR_ID = "9a1d5c3e-2b7f-4e6a-8c90-1f2e3d4c5b6a";

const task = {
  task_id: TASK_ID,
  status: "completed",
  description: "product demo, take 3",
  created_at: CREATED,
  started_at: "2026-11-28T09:00:01.250Z",
  completed_at: "2026-11-28T09:00:42.900Z",
  machine: "gpu-1",
  progress: 100,
  error_message: null,
  error_kind: null,
  result_url: `http://gateway.lan:8101/tasks/${TASK_ID}/result`,
  attempts: 1,
  priority: 0,
  audio_duration: 12.48,
  audio_name: "take3.wav",
  audio_bytes: 399_404,
  video_name: "presenter.mp4",
  video_bytes: 104_857_600,
  callback_url: "https://app.example.com/hooks/heygem?***",
  owner: "shop",
  files_deleted_at: null,
  avatar_id: AVATAR_ID,
};

const avatar = {
  avatar_id: AVATAR_ID,
  name: "Lin, studio take",
  sha256: "5f2b9c0e7d4a1b3c6e8f0a2d4c6b8e0f1a3c5e7d9b1f3a5c7e9d1b3f5a7c9e1d",
  bytes: 104_857_600,
  duration: 62.4,
  width: 1080,
  height: 1920,
  fps: 25,
  owner: "shop",
  created_at: "2026-11-27T16:20:00.000Z",
  machines: ["gpu-1", "gpu-2"],
};

const voice = {
  voice_id: "4c2e8a10-7d3b-4f5e-9a61-2b8c0d4e6f13",
  name: "Lin's voice",
  lang: "zh",
  sha256: "8e1f3a5c7b9d0e2f4a6c8b0d2e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4e6b8d0f",
  bytes: 1_920_078,
  duration: 60,
  reference_text: "大家好，我是林，今天给大家介绍一款新产品。",
  avatar_id: AVATAR_ID,
  owner: "shop",
  created_at: "2026-11-27T16:25:00.000Z",
};

const event = {
  id: 1042,
  at: "2026-11-28T09:00:01.250Z",
  type: "dispatched",
  from_status: "pending",
  to_status: "processing",
  machine: "gpu-1",
  attempt_id: "b7e1c9d2-4f3a-4e8b-a6c5-0d9e8f7a6b5c",
  progress: null,
  message: null,
};

const machine = {
  name: "gpu-1",
  host: "10.0.0.21",
  port: 8000,
  state: "up",
  enabled: true,
  draining: false,
  agent_draining: false,
  running: 1,
  held: 0,
  max_concurrent: 2,
  capacity: 2,
  warnings: [],
  tasks_done: 318,
  tasks_failed: 2,
  speed: 1.8,
  speed_samples: 64,
  last_error: null,
  last_seen: "2026-11-28T09:00:40.000Z",
  consecutive_failures: 0,
  engine: "heygem",
  version: "0.1.0",
  free_disk_bytes: 412_000_000_000,
  containers: [
    {
      name: "gpu0",
      reachable: true,
      healthy: true,
      busy: true,
      job: "b7e1c9d2-4f3a-4e8b-a6c5-0d9e8f7a6b5c",
      last_error: null,
    },
    { name: "gpu1", reachable: true, healthy: true, busy: false, job: null, last_error: null },
  ],
};

const callbackTry = {
  at: "2026-11-28T09:00:43.010Z",
  duration_ms: 38,
  http_status: 200,
  error: null,
};

const delivery = {
  id: 77,
  webhook_id: "msg_2f9a0c1d7e4b4a5c8d6e",
  event: "completed",
  status: "completed",
  state: "delivered",
  created_at: "2026-11-28T09:00:42.900Z",
  next_try_at: null,
  last_error: null,
  tries: [callbackTry],
};

export const OPENAPI_EXAMPLES: Readonly<Record<string, unknown>> = {
  ErrorBody: {
    error: "MISSING_FIELD",
    message: "an audio file is required (form field audio or audio_file)",
    field: "audio",
  },
  Task: task,
  TaskList: { tasks: [task], total: 1, limit: 50, offset: 0, next_before: null },
  TaskEvent: event,
  TaskEvents: { task_id: TASK_ID, events: [event] },
  SyncFailure: {
    error: "TASK_FAILED",
    message: "the audio has no sound stream the engine can read",
    task_id: TASK_ID,
  },
  SyncUnavailable: {
    error: "SHUTTING_DOWN",
    message: "the gateway is shutting down; the task is kept: follow it with GET /tasks/{task_id}",
    task_id: TASK_ID,
  },
  BulkCancelResult: { cancelled: 42 },
  Avatar: avatar,
  AvatarList: { avatars: [avatar], total: 1, limit: 50, offset: 0 },
  AvatarWarming: { avatar_id: AVATAR_ID, sending: ["gpu-2", "gpu-3"], holding: ["gpu-1"] },
  Voice: voice,
  VoiceList: { voices: [voice], total: 1, limit: 50, offset: 0 },
  Machine: machine,
  MachineList: {
    machines: [machine],
    config: {
      file: "config/machines.json",
      loaded_at: "2026-11-28T08:00:00.000Z",
      rejected_at: null,
      error: null,
    },
  },
  CallbackTry: callbackTry,
  CallbackDelivery: delivery,
  TaskCallbacks: {
    task_id: TASK_ID,
    callback_url: "https://app.example.com/hooks/heygem?***",
    deliveries: [delivery],
  },
  CallbackPayload: {
    task_id: TASK_ID,
    status: "completed",
    completed_at: "2026-11-28T09:00:42.900Z",
    error_message: null,
    description: "product demo, take 3",
    created_at: CREATED,
    started_at: "2026-11-28T09:00:01.250Z",
    machine: "gpu-1",
    progress: 100,
    event: "completed",
    event_id: 1050,
    at: "2026-11-28T09:00:42.900Z",
    result_url: `http://gateway.lan:8101/tasks/${TASK_ID}/result`,
  },
};
