import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDir } from "../make-dir.js";
import { probeMedia } from "./probe.js";
import { runFfmpeg } from "./run-ffmpeg.js";
import { UNTRUSTED_INPUT_ARGS } from "./untrusted-input.js";

export interface PingPongOptions {
  /** Absolute index of the template's video stream. */
  readonly videoStream: number;
  /** Template frame rate as ffprobe's exact fraction ("30000/1001"), kept by every intermediate. */
  readonly frameRate: string;
  readonly fps: number;
  readonly width: number;
  readonly height: number;
  /** Seconds of template video, for progress. */
  readonly durationSec: number;
  /** Scratch folder; the intermediates live in a subfolder that is removed once the cycle is built. */
  readonly workDir: string;
  /** Upper bound on frames per reversed chunk (default 60); smaller for large frames, see below. */
  readonly chunkFrames?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (percent: number) => void;
}

const DEFAULT_CHUNK_FRAMES = 60;
const MIN_CHUNK_FRAMES = 8;
// ffmpeg's `reverse` filter holds every frame of its input as raw video until end of input.
const REVERSE_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * Builds one ping-pong cycle of the template — frames 0…N-1 then N-2…1 — as `cycle.mp4` in
 * `workDir`, ready for `-stream_loop -1`. The turning frames are not repeated, so the loop never
 * holds still for a frame at either end.
 *
 * A whole-template `reverse` would keep the template decoded in memory (a minute of 1080p is
 * ~4.5 GB), so the backward half is made of short chunks, each reversed by its own ffmpeg run.
 * The forward half is re-encoded first to constant frame rate with a keyframe at every chunk
 * start: that gives an exact frame count, timestamps that are plain multiples of 1/fps, and
 * cheap seeks. All pieces share one encoder setting so the concat demuxer can join them by copy.
 */
export async function buildPingPongCycle(template: string, options: PingPongOptions): Promise<string> {
  const { workDir, frameRate, fps, signal } = options;
  const dir = join(workDir, "ping-pong");
  await makeDir(dir);
  const chunkFrames = chunkSize(options);
  const common = signal ? { signal } : {};
  const encode = [
    "-an",
    "-sn",
    "-dn",
    "-r",
    frameRate,
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-crf",
    "12",
    "-pix_fmt",
    "yuv420p",
    "-g",
    String(chunkFrames),
    "-f",
    "mp4",
  ];

  // Forward half: half of the work, reported as 0–50.
  const forward = join(dir, "forward.mp4");
  await runFfmpeg(
    [
      "-v",
      "error",
      ...UNTRUSTED_INPUT_ARGS,
      "-i",
      template,
      "-map",
      `0:${options.videoStream}`,
      "-vf",
      "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p",
      ...encode,
      forward,
    ],
    {
      ...common,
      totalDurationSec: options.durationSec,
      onProgress: (p) => options.onProgress?.(p / 2),
    },
  );
  const probed = await probeMedia(forward, common);
  const frames = probed.video?.frames ?? Math.round((probed.video?.durationSec ?? probed.durationSec) * fps);

  const names = ["forward.mp4"];
  const chunks = backwardChunks(frames, chunkFrames);
  let done = 0;
  for (const [index, [first, end]] of chunks.entries()) {
    const count = end - first;
    const name = `backward-${String(index).padStart(5, "0")}.mp4`;
    // Seeking half a frame early lands on frame `first` exactly, however the float rounds.
    await runFfmpeg(
      [
        "-v",
        "error",
        "-ss",
        ((first - 0.5) / fps).toFixed(6),
        "-t",
        (count / fps).toFixed(6),
        "-i",
        forward,
        // Each reversed frame is stamped n/fps from zero. Left to the seek, its timestamps start
        // half a frame off, and ffmpeg 5.x turns that into a doubled frame at every chunk seam
        // (and the last two frames of the cycle lost); 4.x happened to round it away.
        "-vf",
        `reverse,setpts=N/((${frameRate})*TB)`,
        "-frames:v",
        String(count),
        ...encode,
        join(dir, name),
      ],
      common,
    );
    names.push(name);
    done += count;
    options.onProgress?.(50 + (50 * done) / Math.max(1, frames - 2));
  }

  // The concat demuxer resolves relative names against the list's folder; ours need no quoting.
  const list = join(dir, "cycle.txt");
  await writeFile(list, names.map((n) => `file '${n}'\n`).join(""));
  const cycle = join(workDir, "cycle.mp4");
  await runFfmpeg(["-v", "error", "-f", "concat", "-i", list, "-c", "copy", "-f", "mp4", cycle], common);
  await rm(dir, { recursive: true, force: true });
  options.onProgress?.(100);
  return cycle;
}

function chunkSize(options: PingPongOptions): number {
  const frameBytes = Math.max(1, options.width * options.height * 1.5);
  const byMemory = Math.floor(REVERSE_MEMORY_BUDGET_BYTES / frameBytes);
  const wanted = options.chunkFrames ?? DEFAULT_CHUNK_FRAMES;
  return Math.max(1, Math.min(wanted, Math.max(MIN_CHUNK_FRAMES, byMemory)));
}

/**
 * `[first, end)` frame ranges covering frames 1…N-2, last range first, split on multiples of
 * `size` so each range starts at (or just after) a keyframe of the forward half.
 */
export function backwardChunks(frames: number, size: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  const stop = frames - 1;
  for (let start = 0; start < stop; start += size) {
    const first = Math.max(1, start);
    const end = Math.min(start + size, stop);
    if (end > first) ranges.push([first, end]);
  }
  return ranges.reverse();
}
