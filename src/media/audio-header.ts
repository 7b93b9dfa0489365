import { open, readFile, stat } from "node:fs/promises";
import { type IAudioMetadata, type IOptions, parseBuffer, parseFile } from "music-metadata";
import { moovIn, readMoov } from "./mp4-boxes.js";
import type { MediaInfo } from "./probe.js";
import { MAX_MOOV_BYTES, readAudioMovie } from "./video-header.js";
import { readWav } from "./wav-header.js";

/**
 * Files larger than this go to ffprobe: the parser reads tags (ID3, Vorbis comments, MP4 atoms)
 * into memory, so its memory is bounded by the file, and a large upload is slow to arrive anyway.
 */
const MAX_BYTES = 16 * 1024 * 1024;

/**
 * Files up to this size are read in one go and parsed in memory. The file parser reads token by
 * token, each read a round trip to libuv's thread pool: about 50 for a minute of M4A (ffmpeg puts
 * its index after the audio), and on a busy worker each waits behind the pool's other work (record
 * fsyncs, blob links), which made the check before a job's engine starts take 94 ms (issue 14).
 */
const READ_WHOLE_BYTES = 1024 * 1024;

/** Where a WAV's format and data chunks are looked for in a file too large to read whole. */
const WAV_HEAD_BYTES = 64 * 1024;

const PARSE_OPTIONS: IOptions = { duration: false, skipCovers: true, skipPostHeaders: true };

interface Known {
  /** ffprobe's name for the container, so facts read either way look alike. */
  readonly formatName: string;
  readonly codec: (codec: string) => string | undefined;
}

/** The containers read here, by music-metadata's name; the codecs each may carry (else: unusual). */
function known(container: string): Known | undefined {
  if (container === "WAVE")
    return {
      formatName: "wav",
      codec: (c) => (c === "PCM" ? "pcm" : c === "IEEE_FLOAT" ? "pcm_f" : undefined),
    };
  if (container === "MPEG")
    return { formatName: "mp3", codec: (c) => (/Layer 3$/.test(c) ? "mp3" : undefined) };
  if (container === "FLAC") return { formatName: "flac", codec: (c) => (c === "FLAC" ? "flac" : undefined) };
  if (container === "Ogg")
    return {
      formatName: "ogg",
      codec: (c) => (c.startsWith("Vorbis") ? "vorbis" : c === "Opus" ? "opus" : undefined),
    };
  if (container.startsWith("M4A/"))
    return { formatName: "mov,mp4,m4a,3gp,3g2,mj2", codec: (c) => (c === "MPEG-4/AAC" ? "aac" : undefined) };
  return undefined;
}

/**
 * Measures a common audio file (WAV, MP3, M4A, FLAC, Ogg Vorbis/Opus) from its headers, in
 * process: about 1 ms, where one ffprobe run costs 12–180 ms depending on the build (issue 8; a
 * Debian build links 215 libraries, and loading them took 110 ms of CPU per start on a test VM).
 * Answers `undefined` for anything else or anything odd (another codec, a video track, no
 * duration, a parse error): ffprobe then judges the file. Durations come from the headers, as
 * ffprobe's do; an M4A that only the parser reads has the encoder's priming samples counted in
 * (a few tens of ms). `content`, the whole file when the caller holds it already, spares reading
 * it again.
 */
export async function readAudioHeader(path: string, content?: Buffer): Promise<MediaInfo | undefined> {
  try {
    // Held in memory by the caller already, whatever its size.
    if (content) return ownReading(content) ?? (await parseWhole(content));
    const { size } = await stat(path);
    if (size > MAX_BYTES) return undefined;
    if (size <= READ_WHOLE_BYTES) {
      const whole = await readFile(path);
      return ownReading(whole) ?? (await parseWhole(whole));
    }
    return (await ownReadingOfFile(path, size)) ?? facts(await parseFile(path, PARSE_OPTIONS));
  } catch {
    return undefined;
  }
}

/**
 * WAV and M4A, the commonest uploads, are read by this project's own readers (wav-header.ts, the
 * MP4 reader of video-header.ts): microseconds, where the parser took most of a millisecond per
 * file and 25–35 ms to load on first use. Anything they do not read exactly goes to the parser.
 */
function ownReading(whole: Buffer): MediaInfo | undefined {
  const wav = readWav(whole, whole.length);
  if (wav) return wav;
  try {
    const moov = moovIn(whole, MAX_MOOV_BYTES);
    return moov && readAudioMovie(moov);
  } catch {
    return undefined;
  }
}

/** `ownReading` of a file too large to read whole: the WAV's first chunks, or the MP4's `moov`. */
async function ownReadingOfFile(path: string, size: number): Promise<MediaInfo | undefined> {
  const file = await open(path, "r");
  try {
    const head = Buffer.alloc(Math.min(size, WAV_HEAD_BYTES));
    await file.read(head, 0, head.length, 0);
    const wav = readWav(head, size);
    if (wav) return wav;
    const moov = await readMoov(file, size, MAX_MOOV_BYTES).catch(() => undefined);
    return moov && readAudioMovie(moov);
  } finally {
    await file.close();
  }
}

async function parseWhole(whole: Buffer): Promise<MediaInfo | undefined> {
  return facts(await parseBuffer(whole, { size: whole.length }, PARSE_OPTIONS));
}

/** What the parser found, as ffprobe would say it, or `undefined` for anything unusual. */
function facts(metadata: IAudioMetadata): MediaInfo | undefined {
  const f = metadata.format;
  const kind = f.container ? known(f.container) : undefined;
  const codec = kind && f.codec ? kind.codec(f.codec) : undefined;
  if (!kind || !codec || f.hasVideo) return undefined;
  const { duration, sampleRate, numberOfChannels } = f;
  if (!(duration !== undefined && Number.isFinite(duration) && duration > 0)) return undefined;
  if (!(sampleRate !== undefined && sampleRate > 0 && numberOfChannels !== undefined && numberOfChannels > 0))
    return undefined;
  return {
    durationSec: duration,
    formatName: kind.formatName,
    audio: { index: 0, codec, sampleRate, channels: numberOfChannels, durationSec: duration },
  };
}
