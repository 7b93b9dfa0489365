import { basename, extname } from "node:path";
import type {} from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import type { BlobStore, StagedBlob } from "../../blobs/blob-store.js";
import { InputError, TooLargeError } from "../../errors.js";
import { FfmpegError, isAbortError } from "../../media/run-ffmpeg.js";
import { extractSoundTrack } from "../../media/sound-track.js";
import { DEFAULT_SPEECH_LANG, SPEECH_LANG_PATTERN } from "../../protocol/schemas.js";
import type { AvatarRow } from "../../store/schema.js";
import { unlessAborted } from "../../unless-aborted.js";
import type { MediaInspector } from "../media-inspector.js";
import { inLargerChunks } from "./chunk-batcher.js";
import { VOICE_REFERENCE_MAX_SECONDS } from "./schemas.js";
import { formatBytes, isFileTooLarge, safeName, uploadFault } from "./upload.js";
import { UploadDeadline, type UploadDeadlineOptions } from "./upload-deadline.js";

/** A received POST /voices form: the recording is staged, checked, and not yet in the blob store. */
export interface VoiceUpload {
  readonly reference: StagedBlob;
  readonly fileName: string;
  readonly duration: number;
  readonly name: string | null;
  readonly lang: string;
  readonly avatarId: string | null;
  /** The form field a refusal of the recording names. */
  readonly field: "audio" | "avatar_id";
}

const AUDIO_FIELDS = new Set(["audio", "audio_file"]);
const TEXT_FIELDS = new Set(["avatar_id", "name", "lang"]);
const MAX_NAME = 200;
const LANG = new RegExp(SPEECH_LANG_PATTERN);
/** A sound track of at most five minutes is written in seconds; this only stops a wedged ffmpeg. */
const EXTRACT_TIMEOUT_MS = 120_000;

/**
 * Reads POST /voices as a stream, as the avatar and task routes read theirs: an uploaded recording
 * goes to a temp file while hashed and is checked like a task's audio, plus the length a voice
 * takes; an avatar's sound track is taken out of its video with ffmpeg instead. Any refusal
 * discards what was staged, so nothing is left on disk.
 */
export async function receiveVoiceUpload(
  request: FastifyRequest,
  options: {
    blobs: BlobStore;
    inspector: MediaInspector;
    maxBytes: number;
    deadline: UploadDeadlineOptions;
    /** The avatar of the form's `avatar_id` if the request may use it; throws UNKNOWN_AVATAR otherwise. */
    avatar: (id: string) => Promise<AvatarRow>;
  },
): Promise<VoiceUpload> {
  if (!request.isMultipart()) {
    throw new InputError(
      "NOT_MULTIPART",
      "send the voice as multipart/form-data with an audio file (or avatar_id)",
    );
  }
  let staged: { blob: StagedBlob; name: string; field: string } | undefined;
  let soundTrack: StagedBlob | undefined;
  const text = new Map<string, string>();
  const deadline = new UploadDeadline(request.raw, options.deadline);
  try {
    const parts = request.parts({
      limits: { fileSize: options.maxBytes + 1, files: 2, fields: 8, fieldSize: 4 * 1024 },
    });
    for (;;) {
      const next = await unlessAborted(parts.next(), deadline.signal);
      if (next.done) break;
      const part = next.value;
      if (part.type === "file") {
        if (!AUDIO_FIELDS.has(part.fieldname)) {
          part.file.resume();
          throw new InputError(
            "UNKNOWN_FIELD",
            `unexpected file field "${part.fieldname}"; send audio (or audio_file)`,
            part.fieldname,
          );
        }
        if (staged) {
          part.file.resume();
          throw new InputError("DUPLICATE_FIELD", "more than one audio file", part.fieldname);
        }
        // Refused before a byte of it is stored: the avatar's sound is the recording then.
        if (text.has("avatar_id")) {
          part.file.resume();
          throw audioAndAvatar();
        }
        const blob = await options.blobs.stage(inLargerChunks(part.file), {
          signal: deadline.signal,
          maxBytes: options.maxBytes,
          onTooLarge: () =>
            new TooLargeError(
              `${part.fieldname} is larger than the limit of ${formatBytes(options.maxBytes)}`,
              part.fieldname,
            ),
        });
        staged = { blob, name: safeName(part.filename, "audio"), field: part.fieldname };
        if (blob.bytes === 0)
          throw new InputError("EMPTY_FILE", `${part.fieldname} is empty`, part.fieldname);
      } else if (TEXT_FIELDS.has(part.fieldname)) {
        if (part.valueTruncated) {
          throw new InputError("INVALID_FIELD", `${part.fieldname} is too long`, part.fieldname);
        }
        text.set(part.fieldname, String(part.value));
      } else {
        throw new InputError("UNKNOWN_FIELD", `unexpected form field "${part.fieldname}"`, part.fieldname);
      }
    }
    deadline.done();
    const avatarId = text.get("avatar_id")?.trim();
    if (staged && avatarId !== undefined) throw audioAndAvatar();
    const name = text.get("name")?.trim() || null;
    if (name !== null && name.length > MAX_NAME) {
      throw new InputError("INVALID_FIELD", `name is longer than ${MAX_NAME} characters`, "name");
    }
    const lang = (text.get("lang")?.trim() || DEFAULT_SPEECH_LANG).toLowerCase();
    if (!LANG.test(lang)) {
      throw new InputError(
        "INVALID_FIELD",
        "lang must be a language code such as zh, en or ja (letters and -, 2 to 16 of them)",
        "lang",
      );
    }
    if (staged) {
      const media = await options.inspector.inspect(staged.blob, "audio");
      if (media.durationSec > VOICE_REFERENCE_MAX_SECONDS) {
        throw new InputError(
          "AUDIO_TOO_LONG",
          `${staged.field} is ${Math.round(media.durationSec)} s long; a voice's recording may be at most ` +
            `${VOICE_REFERENCE_MAX_SECONDS} s (10–30 s of clear speech is plenty)`,
          staged.field,
        );
      }
      return {
        reference: staged.blob,
        fileName: referenceName(staged.name, media.formatName),
        duration: media.durationSec,
        name,
        lang,
        avatarId: null,
        field: "audio",
      };
    }
    if (!avatarId) {
      throw new InputError(
        "MISSING_FIELD",
        "an audio file (form field audio or audio_file) or an avatar_id is required",
        avatarId === undefined ? "audio" : "avatar_id",
      );
    }
    const avatar = await options.avatar(avatarId);
    soundTrack = await avatarSoundTrack(avatar, options);
    const media = await options.inspector.inspect(soundTrack, "audio");
    return {
      reference: soundTrack,
      fileName: `${basename(avatar.file_name, extname(avatar.file_name))}.wav`,
      duration: media.durationSec,
      name,
      lang,
      avatarId: avatar.id,
      field: "avatar_id",
    };
  } catch (err) {
    deadline.done();
    await staged?.blob.discard();
    await soundTrack?.discard();
    if (isFileTooLarge(err)) {
      throw new TooLargeError(`a file is larger than the limit of ${formatBytes(options.maxBytes)}`);
    }
    throw uploadFault(err, request, deadline.signal);
  }
}

/**
 * The avatar's video's first sound track, staged as a WAV of at most VOICE_REFERENCE_MAX_SECONDS:
 * a client cannot trim an avatar, so a long one gives its beginning.
 */
async function avatarSoundTrack(
  avatar: AvatarRow,
  options: { blobs: BlobStore; inspector: MediaInspector },
): Promise<StagedBlob> {
  const video = { path: options.blobs.path(avatar.sha256), sha256: avatar.sha256 };
  // The avatar's facts were measured when it was uploaded: no ffprobe now.
  const media = await options.inspector.inspect(video, "video");
  if (!media.audio) {
    throw new InputError(
      "AVATAR_HAS_NO_AUDIO",
      `avatar ${avatar.id}'s video has no sound track to take a voice from: upload a recording as audio`,
      "avatar_id",
    );
  }
  try {
    return await options.blobs.stageFrom((out) =>
      extractSoundTrack(video.path, out, {
        maxSeconds: VOICE_REFERENCE_MAX_SECONDS,
        signal: AbortSignal.timeout(EXTRACT_TIMEOUT_MS),
      }),
    );
  } catch (err) {
    // ffmpeg's own words name the files of the store: they stay out of the answer.
    if (!(err instanceof FfmpegError) && !isAbortError(err)) throw err;
    throw new InputError(
      "INVALID_MEDIA",
      `avatar ${avatar.id}'s sound track could not be read (ffmpeg failed on it within ${EXTRACT_TIMEOUT_MS / 1000} s)`,
      "avatar_id",
    );
  }
}

/** The formats fish-speech takes as they are, known by the file name's extension on the machine. */
const SERVER_FORMATS = new Set(["wav", "mp3", "flac"]);

/**
 * The recording's file name with an extension that tells its real format: the machine hands wav,
 * mp3 and flac to fish-speech by extension and converts anything else, so a `.wav` that holds an
 * M4A must not keep its name. `formatName` is ffprobe's (`wav`, `mp3`, `mov,mp4,m4a,…`).
 */
function referenceName(name: string, formatName: string): string {
  const stem = basename(name, extname(name)) || "audio";
  const format = formatName.split(",")[0] ?? "";
  if (SERVER_FORMATS.has(format)) return `${stem}.${format}`;
  return SERVER_FORMATS.has(extname(name).slice(1).toLowerCase()) || extname(name) === ""
    ? `${stem}.audio`
    : name;
}

function audioAndAvatar(): InputError {
  return new InputError(
    "AUDIO_AND_AVATAR",
    "send either an audio file or avatar_id, not both: with avatar_id the voice is taken from the avatar's video",
    "avatar_id",
  );
}
