import { basename } from "node:path";
import type {} from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import type { BlobStore, StagedBlob } from "../../blobs/blob-store.js";
import { AppError, InputError, TooLargeError } from "../../errors.js";
import { storageFault } from "../../http/storage-faults.js";
import type { MediaInfo } from "../../media/probe.js";
import {
  DEFAULT_JOB_OPTIONS,
  DEFAULT_SPEECH_LANG,
  type JobOptions,
  type SpeechSettings,
} from "../../protocol/schemas.js";
import type { TaskNeed } from "../../store/task-speech.js";
import { unlessAborted } from "../../unless-aborted.js";
import type { AddressPolicy } from "../callbacks/address-policy.js";
import type { MediaInspector } from "../media-inspector.js";
import type { Forwarded, Prestager } from "../prestage.js";
import { inLargerChunks } from "./chunk-batcher.js";
import { parseSpeechForm, SPEECH_FIELDS } from "./speech-form.js";
import { UploadCutError, UploadDeadline, type UploadDeadlineOptions } from "./upload-deadline.js";

/** A received, validated task form whose files are staged but not yet in the blob store. */
export interface TaskUpload {
  /** The uploaded audio; null for a text task. */
  audio: StagedFile | null;
  /** A text task's speech (form field `text` instead of an audio file, issue 12); null otherwise. */
  speech: TaskSpeechForm | null;
  /** The uploaded video, or the avatar's (already in the blob store). */
  video: { sha256: string; name: string; bytes: number };
  /** The avatar named by the form's `avatar_id` instead of a video file; null with a video file. */
  avatarId: string | null;
  description: string | null;
  callbackUrl: string | null;
  priority: number;
  options: JobOptions;
  /**
   * Moves both files into the blob store and runs `record` (which creates the task row that
   * references them), keeping the files in place against a concurrent retention sweep
   * (BlobStore.commitWhile).
   */
  commitWhile<T>(record: () => Promise<T>): Promise<T>;
  discard(): Promise<void>;
}

export interface TaskSpeechForm {
  text: string;
  /** As given, else the voice's language, else DEFAULT_SPEECH_LANG. */
  lang: string;
  settings: SpeechSettings;
  voiceId: string | null;
}

export interface StagedFile {
  blob: StagedBlob;
  name: string;
  media: MediaInfo;
}

interface Received {
  blob: StagedBlob;
  name: string;
  /** The form field it came in (audio or audio_file…), for messages. */
  field: string;
  /** The copy sent ahead to a machine while the client uploaded (video only). */
  forwarding?: Promise<Forwarded | undefined> | undefined;
}

/**
 * A form's file up to this size is held in memory until its hash is known (BlobStore, holdUpTo):
 * an audio of a minute or so, and a short template, which is then not written again when the store
 * has it. The audio is also read from memory to be measured.
 */
const HELD_FILE_BYTES = 1024 * 1024;

/** The seed's two clients spell the file fields differently; both mean the same. */
const FILE_FIELDS: Record<string, "audio" | "video"> = {
  audio: "audio",
  audio_file: "audio",
  video: "video",
  video_file: "video",
};
const TEXT_FIELDS = new Set([
  "description",
  "callback_url",
  "priority",
  "chaofen",
  "watermark_switch",
  "pn",
  "avatar_id",
  ...SPEECH_FIELDS,
]);

/** The video of an avatar a task names (issue 12), as far as a task needs to know it. */
export interface AvatarVideo {
  readonly id: string;
  readonly sha256: string;
  readonly fileName: string;
  readonly bytes: number;
}

/** A voice a text task names (issue 12), as far as a task needs to know it. */
export interface TaskVoice {
  readonly id: string;
  readonly lang: string;
}

/**
 * Reads the multipart form as a stream: each file goes to a temp file while being hashed, so memory
 * does not grow with upload size. Any problem discards every staged file, so a rejected request
 * leaves nothing on disk.
 */
export async function receiveTaskUpload(
  request: FastifyRequest,
  options: {
    blobs: BlobStore;
    inspector: MediaInspector;
    maxBytes: number;
    /** Longer audio is refused (HeyGem's own limit is 30 min; issue 9: a 1-hour silent MP3 is 3.9 MB). */
    maxAudioSeconds: number;
    deadline: UploadDeadlineOptions;
    prestage?: Prestager | undefined;
    /** Where a callback_url may point (issue 9: no SSRF). */
    callbackPolicy: AddressPolicy;
    /** The avatar of a form's `avatar_id` if the request may use it; throws UNKNOWN_AVATAR otherwise. */
    avatar: (id: string) => Promise<AvatarVideo>;
    /** The voice of a form's `voice_id` if the request may use it; throws UNKNOWN_VOICE otherwise. */
    voice: (id: string) => Promise<TaskVoice>;
    /** Throws when no machine of the fleet can take a task that needs `need` (fleet-abilities.ts). */
    refuseUnservable: (need: TaskNeed) => void;
  },
): Promise<TaskUpload> {
  if (!request.isMultipart()) {
    throw new InputError(
      "NOT_MULTIPART",
      "send the task as multipart/form-data with an audio file (or text) and a video file (or avatar_id)",
      undefined,
      415,
    );
  }
  const staged: Partial<Record<"audio" | "video", Received>> = {};
  const text = new Map<string, string>();
  const discardAll = async () => {
    await Promise.all(
      Object.values(staged).map(async (f) => {
        await f?.blob.discard();
        await undoForward(f?.forwarding);
      }),
    );
  };
  const deadline = new UploadDeadline(request.raw, options.deadline);
  try {
    // busboy's own cap sits one byte above ours, so our meter (with its clearer message) trips first.
    const parts = request.parts({
      limits: { fileSize: options.maxBytes + 1, files: 4, fields: 32, fieldSize: 64 * 1024 },
    });
    for (;;) {
      // A client that stalls between two parts leaves this wait open: the deadline ends it.
      const next = await unlessAborted(parts.next(), deadline.signal);
      if (next.done) break;
      const part = next.value;
      if (part.type === "file") {
        const kind = FILE_FIELDS[part.fieldname];
        if (!kind && TEXT_FIELDS.has(part.fieldname)) {
          part.file.resume();
          throw new InputError(
            "INVALID_FIELD",
            `${part.fieldname} is a form field, not a file (curl: -F "${part.fieldname}=<file.txt" sends a file's content)`,
            part.fieldname,
          );
        }
        if (!kind) {
          part.file.resume();
          throw new InputError(
            "UNKNOWN_FIELD",
            `unexpected file field "${part.fieldname}"; send audio (or audio_file) and video (or video_file)`,
            part.fieldname,
          );
        }
        if (staged[kind]) {
          part.file.resume();
          throw new InputError("DUPLICATE_FIELD", `more than one ${kind} file`, part.fieldname);
        }
        // Refused before a byte of it is stored: the point of an avatar is not to send this file.
        if (kind === "video" && text.has("avatar_id")) {
          part.file.resume();
          throw videoAndAvatar();
        }
        if (kind === "audio" && text.has("text")) {
          part.file.resume();
          throw audioAndText(part.fieldname);
        }
        // A text task's video goes ahead only to a machine that can speak it (fields sent first).
        const need: TaskNeed = !text.has("text")
          ? "lipsync"
          : text.get("voice_id")?.trim()
            ? "voice_clone"
            : "tts";
        const source = inLargerChunks(part.file);
        const forwarding = kind === "video" ? options.prestage?.forward(source, need) : undefined;
        let blob: StagedBlob;
        try {
          blob = await options.blobs.stage(source, {
            signal: deadline.signal,
            maxBytes: options.maxBytes,
            holdUpTo: HELD_FILE_BYTES,
            onTooLarge: () =>
              new TooLargeError(
                `${part.fieldname} is larger than the limit of ${formatBytes(options.maxBytes)}`,
                part.fieldname,
              ),
          });
        } catch (err) {
          await undoForward(forwarding);
          throw err;
        }
        staged[kind] = { blob, name: safeName(part.filename, kind), field: part.fieldname, forwarding };
        if (blob.bytes === 0)
          throw new InputError("EMPTY_FILE", `${part.fieldname} is empty`, part.fieldname);
      } else if (TEXT_FIELDS.has(part.fieldname)) {
        if (part.valueTruncated) {
          throw new InputError("INVALID_FIELD", `${part.fieldname} is longer than 64 KiB`, part.fieldname);
        }
        text.set(part.fieldname, String(part.value));
      } else {
        throw new InputError("UNKNOWN_FIELD", `unexpected form field "${part.fieldname}"`, part.fieldname);
      }
    }
    const audio = staged.audio;
    const video = staged.video;
    const avatarId = text.get("avatar_id")?.trim();
    const said = parseSpeechForm(text);
    if (!audio && !said)
      throw new InputError(
        "MISSING_FIELD",
        "an audio file (form field audio or audio_file) or a text to speak (form field text) is required",
        "audio",
      );
    if (audio && said) throw audioAndText(audio.field);
    if (video && avatarId !== undefined) throw videoAndAvatar();
    deadline.done();
    const fields = parseTextFields(text, options.callbackPolicy);
    if (said) options.refuseUnservable(said.voiceId === null ? "tts" : "voice_clone");
    const source = video
      ? { sha256: video.blob.sha256, name: video.name, bytes: video.blob.bytes, avatarId: null }
      : await avatarSource(options.avatar, avatarId);
    const voice = said?.voiceId ? await options.voice(said.voiceId) : undefined;
    const [audioMedia] = await Promise.all([
      audio ? options.inspector.inspect(audio.blob, "audio") : undefined,
      video ? options.inspector.inspect(video.blob, "video") : undefined,
    ]);
    if (audioMedia && audioMedia.durationSec > options.maxAudioSeconds) {
      throw new InputError(
        "AUDIO_TOO_LONG",
        `audio is ${Math.round(audioMedia.durationSec)} s long; the limit is ${options.maxAudioSeconds} s`,
        "audio",
      );
    }
    // Nobody would learn the id of a task created for a client that left while its files were probed.
    if (request.raw.socket?.destroyed) throw new UploadCutError();
    const staging = [audio?.blob, video?.blob].filter((b): b is StagedBlob => b !== undefined);
    return {
      ...fields,
      audio: audio && audioMedia ? { ...audio, media: audioMedia } : null,
      speech: said
        ? {
            text: said.text,
            lang: said.lang ?? voice?.lang ?? DEFAULT_SPEECH_LANG,
            settings: said.settings,
            voiceId: voice?.id ?? null,
          }
        : null,
      video: { sha256: source.sha256, name: source.name, bytes: source.bytes },
      avatarId: source.avatarId,
      commitWhile: async (record) => {
        // The task exists only once its video's copy ahead has landed (or failed): a task the
        // dispatcher saw before would find the machine without it, and send it a second time.
        const forwarded = await video?.forwarding;
        if (request.raw.socket?.destroyed) throw new UploadCutError();
        const held = forwarded?.sha256 === video?.blob.sha256 ? forwarded : undefined;
        // An avatar's video is in the store already, held there by the avatar's row; the task's
        // transaction checks that row still exists (TaskStore.createTask).
        const recorded = await options.blobs.commitWhile(staging, async () => {
          const row = await record();
          held?.machine.knowBlob(held.sha256);
          return row;
        });
        forwarded?.settle();
        return recorded;
      },
      discard: discardAll,
    };
  } catch (err) {
    deadline.done();
    await discardAll();
    if (isFileTooLarge(err)) {
      throw new TooLargeError(`a file is larger than the limit of ${formatBytes(options.maxBytes)}`);
    }
    throw uploadFault(err, request, deadline.signal);
  }
}

/**
 * Why an upload failed, as the client should hear it. The multipart parser's own errors (no
 * boundary, a form cut short) are the client's: 400, never 500 (issue 9).
 */
export function uploadFault(err: unknown, request: FastifyRequest, signal: AbortSignal): unknown {
  if (err instanceof AppError) return err;
  // A stopped pipeline rejects with its own AbortError; the deadline's reason says what happened.
  if (signal.aborted) return signal.reason;
  const storage = storageFault(err);
  if (storage) return storage;
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === "ERR_STREAM_PREMATURE_CLOSE" || MULTIPART_FAULT.test(message)) {
    // Only a client that hung up is cut off: a form refused before its body was read (no
    // boundary: busboy says so at once) is the client's mistake, whatever is still unread.
    const hungUp = request.raw.destroyed || request.raw.socket?.destroyed === true;
    if (hungUp && !request.raw.complete) return new UploadCutError();
    return new InputError(
      "MALFORMED_MULTIPART",
      `the multipart body is malformed or ends before its closing boundary (${message})`,
    );
  }
  return err;
}

/** What @fastify/busboy says of a body it cannot parse (its errors carry no code). */
const MULTIPART_FAULT = /boundary|needle|terminated early|end of multipart|content-type/i;

/** A refused task must not leave its video in a machine's cache either. */
async function undoForward(forwarding: Promise<Forwarded | undefined> | undefined): Promise<void> {
  const forwarded = await forwarding;
  if (forwarded?.created) await forwarded.machine.client.deleteBlob(forwarded.sha256).catch(() => undefined);
  // Only once the copy is gone, so no upload of the same template meanwhile counts on it.
  forwarded?.settle();
}

function parseTextFields(text: Map<string, string>, callbackPolicy: AddressPolicy) {
  const description = text.get("description") ?? null;
  if (description !== null && description.length > 2000) {
    throw new InputError("INVALID_FIELD", "description is longer than 2000 characters", "description");
  }
  const callbackUrl = text.get("callback_url")?.trim() || null;
  if (callbackUrl !== null) {
    let url: URL | undefined;
    try {
      url = new URL(callbackUrl);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new InputError(
        "INVALID_FIELD",
        "callback_url must be an http:// or https:// URL",
        "callback_url",
      );
    }
    const refused = callbackPolicy.checkUrl(callbackUrl);
    if (refused) throw new InputError("CALLBACK_URL_FORBIDDEN", refused, "callback_url");
  }
  const priorityText = text.get("priority")?.trim();
  const priority = priorityText ? Number(priorityText) : 0;
  if (!Number.isInteger(priority) || Math.abs(priority) > 1_000_000) {
    throw new InputError("INVALID_FIELD", "priority must be an integer", "priority");
  }
  const options = { ...DEFAULT_JOB_OPTIONS };
  for (const key of ["chaofen", "watermark_switch", "pn"] as const) {
    const value = text.get(key)?.trim();
    if (value === undefined || value === "") continue;
    if (value !== "0" && value !== "1") throw new InputError("INVALID_FIELD", `${key} must be 0 or 1`, key);
    options[key] = value === "1" ? 1 : 0;
  }
  return { description, callbackUrl, priority, options };
}

/** A form without a video file: the avatar it names stands in for it. */
async function avatarSource(
  resolve: (id: string) => Promise<AvatarVideo>,
  avatarId: string | undefined,
): Promise<{ sha256: string; name: string; bytes: number; avatarId: string }> {
  if (!avatarId) {
    throw new InputError(
      "MISSING_FIELD",
      "a video file (form field video or video_file) or an avatar_id is required",
      avatarId === undefined ? "video" : "avatar_id",
    );
  }
  const avatar = await resolve(avatarId);
  return { sha256: avatar.sha256, name: avatar.fileName, bytes: avatar.bytes, avatarId: avatar.id };
}

function videoAndAvatar(): InputError {
  return new InputError(
    "VIDEO_AND_AVATAR",
    "send either a video file or avatar_id, not both: an avatar_id task uploads its audio alone",
    "avatar_id",
  );
}

function audioAndText(field: string): InputError {
  return new InputError(
    "AUDIO_AND_TEXT",
    `send either an audio file or text, not both: a text task's audio is spoken by the machine (drop ${field})`,
    field,
  );
}

export function safeName(filename: string | undefined, kind: string): string {
  const name = basename(filename ?? "")
    .replace(/[^\w.\- ]+/g, "_")
    .slice(-200);
  return name || kind;
}

export function isFileTooLarge(err: unknown): boolean {
  return (err as { code?: string }).code === "FST_REQ_FILE_TOO_LARGE";
}

export function formatBytes(n: number): string {
  return n >= 1024 * 1024 ? `${Math.round(n / (1024 * 1024))} MB` : `${n} bytes`;
}
