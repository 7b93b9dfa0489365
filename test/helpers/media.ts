import { execFile } from "node:child_process";
import { open, writeFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { ffmpegPath } from "../../src/media/ffmpeg-binaries.js";
import { type MediaInfo, probeMedia } from "../../src/media/probe.js";
import { runFfmpeg } from "../../src/media/run-ffmpeg.js";

/** Fixtures made on the fly with the same ffmpeg the code under test uses, tiny so a 2-core box copes. */

export interface VideoFixture {
  seconds: number;
  width?: number;
  height?: number;
  /** Frames per second, or an exact rate ("30000/1001"). */
  fps?: number | string;
  withAudio?: boolean;
  /** Output options for the tone in place of `-c:a aac` (implies withAudio). */
  audioArgs?: string[];
  /** More output options, after the defaults (a later option wins: `-pix_fmt`, `-preset`, `-f`). */
  extraArgs?: string[];
}

/** An H.264 MP4 of ffmpeg's moving test pattern, optionally with a 1 kHz tone. */
export async function makeVideo(path: string, options: VideoFixture): Promise<void> {
  const { seconds, width = 320, height = 240, fps = 25, audioArgs, extraArgs = [] } = options;
  const withAudio = options.withAudio === true || audioArgs !== undefined;
  await runFfmpeg([
    "-v",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    `testsrc=size=${width}x${height}:rate=${fps}:duration=${seconds}`,
    ...(withAudio ? ["-f", "lavfi", "-i", `sine=frequency=1000:duration=${seconds}`] : []),
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    ...(withAudio ? (audioArgs ?? ["-c:a", "aac"]) : []),
    ...extraArgs,
    path,
  ]);
}

/**
 * A video whose frame n is flat grey of brightness 16 + n * step, so `frameLumas` tells which
 * template frame every output frame came from, even after lossy re-encoding.
 */
export async function makeRampVideo(
  path: string,
  options: { frames: number; fps?: number | string },
): Promise<void> {
  const fps = options.fps ?? 25;
  const step = Math.floor(200 / options.frames);
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    `nullsrc=size=64x64:rate=${fps},geq=lum=16+N*${step}:cb=128:cr=128`,
    "-frames:v",
    String(options.frames),
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    path,
  ]);
}

/** The mean brightness of every frame, in order. */
export async function frameLumas(path: string): Promise<number[]> {
  const ffmpeg = await ffmpegPath();
  const raw = await new Promise<Buffer>((resolve, reject) => {
    execFile(
      ffmpeg,
      ["-nostdin", "-v", "error", "-i", path, "-vf", "scale=1:1,format=gray", "-f", "rawvideo", "-"],
      { encoding: "buffer", maxBuffer: 64 * 1024 * 1024 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
  return [...raw];
}

const AUDIO_CODECS: Record<string, string[]> = {
  ".wav": ["-c:a", "pcm_s16le"],
  ".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
  ".m4a": ["-c:a", "aac", "-b:a", "64k"],
};

/**
 * A 440 Hz tone; the container and codec follow the extension (.wav, .mp3, .m4a), or `codec`
 * names the encoder and ffmpeg picks the container from any extension it knows.
 */
export async function makeAudio(
  path: string,
  options: { seconds: number; sampleRate?: number; codec?: string; channels?: number },
): Promise<void> {
  const codec = options.codec ? ["-c:a", options.codec] : AUDIO_CODECS[extname(path).toLowerCase()];
  if (!codec) throw new Error(`makeAudio: no codec for ${path}; use .wav, .mp3 or .m4a, or say which`);
  const rate = options.sampleRate ?? 44_100;
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=440:sample_rate=${rate}:duration=${options.seconds}`,
    ...(options.channels ? ["-ac", String(options.channels)] : []),
    ...codec,
    path,
  ]);
}

/**
 * `count` AAC files of about a second each, `<dir>/<n>.m4a` for n = 0…count-1, each a tone of its
 * own (200 + n Hz): inputs whose results all differ, made in one ffmpeg run however many.
 */
export async function makeDistinctAudios(dir: string, count: number): Promise<string[]> {
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    // One more second than asked: the segment muxer cuts on AAC frames, and the last is a stub.
    `aevalsrc=sin(2*PI*(200+floor(t))*t):s=8000:d=${count + 1}`,
    "-c:a",
    "aac",
    "-f",
    "segment",
    "-segment_time",
    "1",
    "-reset_timestamps",
    "1",
    join(dir, "%d.m4a"),
  ]);
  return Array.from({ length: count }, (_, n) => join(dir, `${n}.m4a`));
}

/** A WAV of pure silence: audio by every check, with nothing in it to hear. */
export async function makeSilentAudio(path: string, options: { seconds: number }): Promise<void> {
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    "anullsrc=sample_rate=16000:channel_layout=mono",
    "-t",
    String(options.seconds),
    "-c:a",
    "pcm_s16le",
    path,
  ]);
}

/** An MP3 carrying a cover picture, which ffprobe lists as a video stream. */
export async function makeAudioWithCover(path: string, options: { seconds: number }): Promise<void> {
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=440:duration=${options.seconds}`,
    "-f",
    "lavfi",
    "-i",
    // Finite on purpose: ffmpeg 4.1 ignores -frames:v here and reads an endless source forever.
    "color=c=red:size=64x64:duration=0.1",
    "-map",
    "0:a",
    "-map",
    "1:v",
    "-frames:v",
    "1",
    "-c:a",
    "libmp3lame",
    "-c:v",
    "mjpeg",
    "-pix_fmt",
    "yuvj420p",
    "-disposition:v",
    "attached_pic",
    "-id3v2_version",
    "3",
    path,
  ]);
}

/** Text that no demuxer accepts, whatever the file is called. */
export async function makeNotMedia(path: string): Promise<void> {
  await writeFile(path, "this is a text file, not audio or video\n".repeat(64));
}

export function probe(path: string): Promise<MediaInfo> {
  return probeMedia(path);
}

/** The top-level MP4 box types in file order, e.g. ["ftyp", "moov", "mdat"]. */
export async function topLevelBoxes(path: string): Promise<string[]> {
  const file = await open(path, "r");
  try {
    const size = (await file.stat()).size;
    const header = Buffer.alloc(16);
    const boxes: string[] = [];
    let offset = 0;
    while (offset + 8 <= size) {
      await file.read(header, 0, 16, offset);
      let boxSize = header.readUInt32BE(0);
      boxes.push(header.toString("latin1", 4, 8));
      if (boxSize === 1) boxSize = Number(header.readBigUInt64BE(8));
      else if (boxSize === 0) boxSize = size - offset;
      if (boxSize < 8) throw new Error(`${path}: bad MP4 box size ${boxSize} at ${offset}`);
      offset += boxSize;
    }
    return boxes;
  } finally {
    await file.close();
  }
}

/** A video that compresses badly (noise), for tests that need megabytes of real media. */
export async function makeNoisyVideo(path: string, options: { seconds: number }): Promise<void> {
  await runFfmpeg([
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    `testsrc=size=640x360:rate=25:duration=${options.seconds},noise=alls=80:allf=t`,
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-crf",
    "12",
    "-pix_fmt",
    "yuv420p",
    path,
  ]);
}
