import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import type { Logger } from "../logger.js";
import { makeDir } from "../make-dir.js";
import { buildPingPongCycle } from "../media/ping-pong.js";
import { MediaError, type MediaInfo, probeMedia } from "../media/probe.js";
import { runFfmpeg } from "../media/run-ffmpeg.js";
import { UNTRUSTED_INPUT_ARGS } from "../media/untrusted-input.js";
import { removeFile } from "../remove-file.js";
import { type Engine, type EngineJob, type EngineRunContext, engineCapacity } from "./engine.js";
import { blameFfmpegFailure } from "./engine-failure.js";
import { moveIntoPlace } from "./move-into-place.js";

export interface FfmpegEngineOptions {
  /** Jobs at once (default 1): each final encode already uses every core. */
  readonly capacity?: number | undefined;
  readonly logger?: Logger | undefined;
  /** libx264 preset of the final encode (default "veryfast"). */
  readonly preset?: string | undefined;
  /** libx264 CRF of the final encode (default 20). */
  readonly crf?: number | undefined;
  /** Upper bound on frames per reversed chunk when building a ping-pong loop (default 60). */
  readonly chunkFrames?: number | undefined;
}

/** Frame rate to assume when ffprobe cannot tell one (a rare, broken template). */
const FALLBACK_FRAME_RATE = "25";

/**
 * The engine for machines without a GPU, and for tests: no lip-sync, it lays the audio under the
 * template video. Output length is the audio's; a shorter template is looped the way HeyGem's `pn`
 * option does it (1 = forward then backward, 0 = restart from the first frame). HeyGem's `chaofen`
 * (super-resolution) and `watermark_switch` have no meaning here and are ignored.
 */
export class FfmpegEngine implements Engine {
  readonly name = "ffmpeg";
  readonly capacity: number;
  private readonly logger: Logger | undefined;
  private readonly preset: string;
  private readonly crf: number;
  private readonly chunkFrames: number | undefined;

  constructor(options: FfmpegEngineOptions = {}) {
    this.capacity = engineCapacity(this.name, options.capacity);
    this.logger = options.logger;
    this.preset = options.preset ?? "veryfast";
    this.crf = options.crf ?? 20;
    this.chunkFrames = options.chunkFrames;
  }

  async run(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    try {
      await this.render(job, ctx);
    } catch (err) {
      throw blameFfmpegFailure(err, ctx.signal, this.name);
    }
  }

  private async render(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    const { signal } = ctx;
    const log = this.logger?.child({ job_id: job.id, engine: this.name });
    const progress = monotonic(ctx);
    progress(0, "probing inputs");

    const [audioFile, videoFile] = await Promise.all([
      probeInput(job.audioPath, "audio", signal),
      probeInput(job.videoPath, "video", signal),
    ]);
    const audio = audioFile.audio;
    const video = videoFile.video;
    if (!audio) throw new EngineError("input", "the audio file has no audio stream");
    if (!video)
      throw new EngineError("input", "the video file has no video stream (cover art does not count)");
    const audioSec = audio.durationSec ?? audioFile.durationSec;
    const videoSec = video.durationSec ?? videoFile.durationSec;
    if (!(audioSec > 0)) throw new EngineError("input", "the audio file has no duration");
    if (!(videoSec > 0)) throw new EngineError("input", "the video file has no duration (a still image?)");
    const frameRate = video.frameRate || FALLBACK_FRAME_RATE;
    const fps = video.fps || Number(FALLBACK_FRAME_RATE);
    if (!video.frameRate) log?.warn({ video: job.videoPath }, "template frame rate unknown; assuming 25 fps");

    await makeDir(job.workDir);
    let source = job.videoPath;
    let sourceStream = video.index;
    let loop = false;
    // Shares of the 0–99 bar, in proportion to the seconds of video each step encodes; the
    // ultrafast ping-pong passes count half as much per second as the final encode.
    let encodeFrom = 0;
    if (audioSec > videoSec) {
      loop = true;
      if (job.options.pn === 1) {
        encodeFrom = Math.round((99 * videoSec) / (videoSec + audioSec));
        const span = encodeFrom;
        log?.debug({ audioSec, videoSec }, "building ping-pong loop");
        source = await buildPingPongCycle(job.videoPath, {
          videoStream: video.index,
          frameRate,
          fps,
          width: video.width,
          height: video.height,
          durationSec: videoSec,
          workDir: job.workDir,
          signal,
          onProgress: (p) => progress((span * p) / 100, "building ping-pong loop"),
          ...(this.chunkFrames !== undefined ? { chunkFrames: this.chunkFrames } : {}),
        });
        sourceStream = 0;
      }
    }

    const partial = join(job.workDir, `output-${randomUUID()}.partial.mp4`);
    log?.debug({ loop, pn: job.options.pn, audioSec, videoSec }, "encoding");
    progress(encodeFrom, "encoding");
    try {
      await runFfmpeg(
        this.finalEncodeArgs(
          { source, sourceStream, loop, audioPath: job.audioPath, audioStream: audio.index },
          {
            frameRate,
            audioSec,
            output: partial,
          },
        ),
        {
          signal,
          totalDurationSec: audioSec,
          onProgress: (p) => progress(encodeFrom + ((99 - encodeFrom) * p) / 100, "encoding"),
        },
      );
      await moveIntoPlace(partial, job.outputPath);
    } finally {
      await removeFile(partial);
    }
    progress(100, "done");
  }

  private finalEncodeArgs(
    input: { source: string; sourceStream: number; loop: boolean; audioPath: string; audioStream: number },
    output: { frameRate: string; audioSec: number; output: string },
  ): string[] {
    return [
      "-v",
      "warning",
      ...(input.loop ? ["-stream_loop", "-1"] : []),
      ...UNTRUSTED_INPUT_ARGS,
      "-i",
      input.source,
      ...UNTRUSTED_INPUT_ARGS,
      "-i",
      input.audioPath,
      // By index: the template's own audio is dropped, and `0:v:0` could pick cover art.
      "-map",
      `0:${input.sourceStream}`,
      "-map",
      `1:${input.audioStream}`,
      // libx264 with yuv420p needs even dimensions.
      "-vf",
      "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p",
      "-r",
      output.frameRate,
      "-c:v",
      "libx264",
      "-preset",
      this.preset,
      "-crf",
      String(this.crf),
      "-pix_fmt",
      "yuv420p",
      "-c:a",
      "aac",
      "-b:a",
      "192k",
      "-t",
      output.audioSec.toFixed(6),
      // ffmpeg 4.x gives up with "Too many packets buffered" when a looped input's timestamps
      // jump; a deeper queue lets it ride over the seam.
      "-max_muxing_queue_size",
      "4096",
      // moov before mdat, so players and browsers can start before the whole file arrives.
      "-movflags",
      "+faststart",
      "-f",
      "mp4",
      output.output,
    ];
  }
}

async function probeInput(path: string, what: "audio" | "video", signal: AbortSignal): Promise<MediaInfo> {
  try {
    return await probeMedia(path, { signal });
  } catch (err) {
    if (err instanceof MediaError) throw new EngineError("input", `the ${what} file: ${err.message}`);
    throw err;
  }
}

/** Whole percentages that only grow, so a late ffmpeg report cannot move the bar backwards. */
function monotonic(ctx: EngineRunContext): (percent: number, message: string) => void {
  let last = -1;
  let lastMessage = "";
  return (percent, message) => {
    const whole = Math.min(100, Math.max(0, Math.floor(percent)));
    if (whole < last || (whole === last && message === lastMessage)) return;
    last = whole;
    lastMessage = message;
    ctx.onProgress(whole, message);
  };
}
