/** `import { Client } from "multi-heygem/client"`: the gateway's API as typed calls. */
export { ApiError } from "./api-error.js";
export {
  type Avatar,
  type AvatarPage,
  type CallbackDeliveries,
  Client,
  type ClientOptions,
  FINAL_STATUSES,
  type FileInput,
  type Machine,
  type NewTask,
  type StreamMessage,
  type Task,
  type TaskEventRow,
  type TaskPage,
  type TaskStatus,
  type UploadOptions,
  type Voice,
  type VoicePage,
} from "./client.js";
