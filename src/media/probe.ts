import { execFile } from "node:child_process";
import { InputError } from "../errors.js";
import { ffprobePath } from "./ffmpeg-binaries.js";
import { UNTRUSTED_INPUT_ARGS } from "./untrusted-input.js";

export interface AudioInfo {
  /** Absolute stream index, for `-map 0:<index>`. */
  readonly index: number;
  readonly codec: string;
  readonly sampleRate: number;
  readonly channels: number;
  readonly durationSec?: number;
}

export interface VideoInfo {
  /** Absolute stream index, for `-map 0:<index>` (`0:v:0` could pick cover art instead). */
  readonly index: number;
  readonly codec: string;
  readonly width: number;
  readonly height: number;
  /** Frames per second from `avg_frame_rate`, else `r_frame_rate`; 0 when ffprobe knows neither. */
  readonly fps: number;
  /** The same rate as ffprobe's exact fraction ("30000/1001"), for `-r`; "" when unknown. */
  readonly frameRate: string;
  readonly durationSec?: number;
  /** Frame count the container states (`nb_frames`), when it states one. */
  readonly frames?: number;
  readonly pixFmt: string;
}

export interface MediaInfo {
  /** The container's duration, else the longest stream's; 0 when nothing states one (a still image). */
  readonly durationSec: number;
  readonly formatName: string;
  readonly audio?: AudioInfo;
  /** The first real video stream; cover art (`attached_pic`, as in MP3s) does not count. */
  readonly video?: VideoInfo;
}

export type MediaErrorCode = "MEDIA_UNREADABLE" | "MEDIA_NO_STREAMS";

/** ffprobe cannot make sense of the file: the input's fault, never the machine's. */
export class MediaError extends InputError {
  constructor(code: MediaErrorCode, message: string, field?: string) {
    super(code, message, field);
  }
}

export interface ProbeOptions {
  readonly signal?: AbortSignal;
  /** ffprobe is killed after this long (default 30 s): a local file never needs more. */
  readonly timeoutMs?: number;
}

// Enough for files with hundreds of streams and chapters; ffprobe's JSON is otherwise tiny.
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Reads a file's streams with ffprobe, as an untrusted upload: local file only, plain containers
 * only (see untrusted-input.ts), with a deadline. Messages never name `path`, which is internal.
 */
export async function probeMedia(path: string, options: ProbeOptions = {}): Promise<MediaInfo> {
  const ffprobe = await ffprobePath();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const args = [
    "-v",
    "error",
    ...UNTRUSTED_INPUT_ARGS,
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    "--",
    path,
  ];
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      ffprobe,
      args,
      {
        maxBuffer: MAX_OUTPUT_BYTES,
        killSignal: "SIGKILL",
        timeout: timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (err, out, errOut) => {
        if (!err) {
          resolve(out);
          return;
        }
        if (err.killed && !options.signal?.aborted) {
          reject(
            new MediaError(
              "MEDIA_UNREADABLE",
              `ffprobe did not finish reading it within ${timeoutMs / 1000} s`,
            ),
          );
          return;
        }
        // Exit code set means ffprobe ran and judged the file; anything else (ENOENT, abort) is ours.
        if (typeof err.code === "number") {
          reject(
            new MediaError(
              "MEDIA_UNREADABLE",
              `not a media file ffprobe can read: ${firstWords(errOut, path, err.code)}`,
            ),
          );
          return;
        }
        reject(err);
      },
    );
  });
  return parseProbeOutput(stdout);
}

/** ffprobe's first line of complaint, with the internal path and the `[demuxer @ 0x…]` noise taken out. */
function firstWords(stderr: string, path: string, exitCode: number): string {
  const first = stderr.split("\n").find((line) => line.trim() !== "");
  if (!first) return `exit code ${exitCode}`;
  const cleaned = first
    .split(path)
    .join("the file")
    .replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/i, "")
    .trim();
  if (/not on (the format )?whitelist/i.test(cleaned))
    return "playlists, manifests and other container lists are not accepted";
  return cleaned.replace(/^the file:\s*/, "");
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** ffprobe writes most numbers as strings ("12.480000") and unknowns as "N/A". */
function num(value: unknown): number | undefined {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : Number.NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** "25/1" → 25; ffprobe says "0/0" for a rate it does not know. */
function rate(value: unknown): { fps: number; text: string } | undefined {
  const text = str(value);
  if (!text) return undefined;
  const [numerator, denominator = "1"] = text.split("/");
  const fps = Number(numerator) / Number(denominator);
  return Number.isFinite(fps) && fps > 0 ? { fps, text } : undefined;
}

/** Exported for tests of odd ffprobe output; `probeMedia` is the normal way in. */
export function parseProbeOutput(stdout: string): MediaInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new MediaError("MEDIA_UNREADABLE", "not a media file ffprobe can read: ffprobe printed no JSON");
  }
  const root = isObject(parsed) ? parsed : {};
  const format = isObject(root.format) ? root.format : {};
  const streams = Array.isArray(root.streams) ? root.streams.filter(isObject) : [];
  if (streams.length === 0) {
    throw new MediaError("MEDIA_NO_STREAMS", "not a media file: it has no audio or video streams");
  }

  const audioStream = streams.find((s) => s.codec_type === "audio");
  const videoStream = streams.find(
    (s) => s.codec_type === "video" && !(isObject(s.disposition) && s.disposition.attached_pic === 1),
  );
  const audio = audioStream ? toAudio(audioStream) : undefined;
  const video = videoStream ? toVideo(videoStream) : undefined;

  const streamDurations = streams.map((s) => num(s.duration)).filter((d): d is number => d !== undefined);
  const durationSec = num(format.duration) ?? (streamDurations.length > 0 ? Math.max(...streamDurations) : 0);

  return {
    durationSec,
    formatName: str(format.format_name) ?? "unknown",
    ...(audio ? { audio } : {}),
    ...(video ? { video } : {}),
  };
}

function toAudio(s: Json): AudioInfo {
  const durationSec = num(s.duration);
  return {
    index: num(s.index) ?? 0,
    codec: str(s.codec_name) ?? "unknown",
    sampleRate: num(s.sample_rate) ?? 0,
    channels: num(s.channels) ?? 0,
    ...(durationSec !== undefined ? { durationSec } : {}),
  };
}

function toVideo(s: Json): VideoInfo {
  const durationSec = num(s.duration);
  const frames = num(s.nb_frames);
  const frameRate = rate(s.avg_frame_rate) ?? rate(s.r_frame_rate);
  return {
    index: num(s.index) ?? 0,
    codec: str(s.codec_name) ?? "unknown",
    width: num(s.width) ?? 0,
    height: num(s.height) ?? 0,
    fps: frameRate?.fps ?? 0,
    frameRate: frameRate?.text ?? "",
    pixFmt: str(s.pix_fmt) ?? "unknown",
    ...(durationSec !== undefined ? { durationSec } : {}),
    ...(frames !== undefined && frames > 0 ? { frames } : {}),
  };
}
