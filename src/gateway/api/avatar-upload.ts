import type {} from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import type { BlobStore, StagedBlob } from "../../blobs/blob-store.js";
import { InputError, TooLargeError } from "../../errors.js";
import type { MediaInfo } from "../../media/probe.js";
import { unlessAborted } from "../../unless-aborted.js";
import type { MediaInspector } from "../media-inspector.js";
import { inLargerChunks } from "./chunk-batcher.js";
import { formatBytes, isFileTooLarge, safeName, uploadFault } from "./upload.js";
import { UploadDeadline, type UploadDeadlineOptions } from "./upload-deadline.js";

/** A received POST /avatars form: the video is staged, checked, and not yet in the blob store. */
export interface AvatarUpload {
  readonly video: StagedBlob;
  readonly fileName: string;
  readonly media: MediaInfo & { readonly video: NonNullable<MediaInfo["video"]> };
  readonly name: string | null;
  readonly warm: boolean;
}

const VIDEO_FIELDS = new Set(["video", "video_file"]);
const MAX_NAME = 200;

/**
 * Reads POST /avatars as a stream, as the task routes read theirs (upload.ts): the video goes to
 * a temp file while hashed and is checked like a task's video; any refusal discards it, so
 * nothing is left on disk.
 */
export async function receiveAvatarUpload(
  request: FastifyRequest,
  options: {
    blobs: BlobStore;
    inspector: MediaInspector;
    maxBytes: number;
    deadline: UploadDeadlineOptions;
  },
): Promise<AvatarUpload> {
  if (!request.isMultipart()) {
    throw new InputError("NOT_MULTIPART", "send the avatar as multipart/form-data with a video file");
  }
  let staged: { blob: StagedBlob; name: string } | undefined;
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
        if (!VIDEO_FIELDS.has(part.fieldname)) {
          part.file.resume();
          throw new InputError(
            "UNKNOWN_FIELD",
            `unexpected file field "${part.fieldname}"; send video (or video_file)`,
            part.fieldname,
          );
        }
        if (staged) {
          part.file.resume();
          throw new InputError("DUPLICATE_FIELD", "more than one video file", part.fieldname);
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
        staged = { blob, name: safeName(part.filename, "video") };
        if (blob.bytes === 0)
          throw new InputError("EMPTY_FILE", `${part.fieldname} is empty`, part.fieldname);
      } else if (part.fieldname === "name" || part.fieldname === "warm") {
        if (part.valueTruncated) {
          throw new InputError("INVALID_FIELD", `${part.fieldname} is too long`, part.fieldname);
        }
        text.set(part.fieldname, String(part.value));
      } else {
        throw new InputError("UNKNOWN_FIELD", `unexpected form field "${part.fieldname}"`, part.fieldname);
      }
    }
    if (!staged) {
      throw new InputError(
        "MISSING_FIELD",
        "a video file is required (form field video or video_file)",
        "video",
      );
    }
    deadline.done();
    const name = text.get("name")?.trim() || null;
    if (name !== null && name.length > MAX_NAME) {
      throw new InputError("INVALID_FIELD", `name is longer than ${MAX_NAME} characters`, "name");
    }
    const warm = parseWarm(text.get("warm"));
    const media = await options.inspector.inspect(staged.blob, "video");
    const video = media.video;
    // inspect() refuses a file without one; the type does not know that.
    if (!video) throw new InputError("INVALID_MEDIA", "video has no video stream", "video");
    return { video: staged.blob, fileName: staged.name, media: { ...media, video }, name, warm };
  } catch (err) {
    deadline.done();
    await staged?.blob.discard();
    if (isFileTooLarge(err)) {
      throw new TooLargeError(`a file is larger than the limit of ${formatBytes(options.maxBytes)}`);
    }
    throw uploadFault(err, request, deadline.signal);
  }
}

function parseWarm(value: string | undefined): boolean {
  const v = value?.trim().toLowerCase();
  if (v === undefined || v === "" || v === "false" || v === "0") return false;
  if (v === "true" || v === "1") return true;
  throw new InputError("INVALID_FIELD", "warm must be true or false", "warm");
}
