import { rename } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../logger.js";
import { FfmpegError, runFfmpeg } from "../media/run-ffmpeg.js";
import { UNTRUSTED_INPUT_ARGS } from "../media/untrusted-input.js";
import { audioSeconds } from "./audio-seconds.js";
import { type Engine, type EngineJob, type EngineRunContext, engineCapacity } from "./engine.js";
import { blameFfmpegFailure } from "./engine-failure.js";

/** What `--speed-factor` and `--time-scale` say. */
export interface SimulateEngineSettings {
  /** Seconds of work per second of audio, as a real engine would take (HeyGem on a good GPU: ~1–2). */
  readonly speedFactor: number;
  /** Multiplies every wait, so a benchmark of hours runs in minutes (0.01 = a hundred times faster). */
  readonly timeScale: number;
}

export interface SimulateEngineOptions {
  /** Jobs at once (default 1). */
  readonly maxConcurrent?: number | undefined;
  readonly logger?: Logger | undefined;
}

export const SIMULATE_DEFAULTS: SimulateEngineSettings = Object.freeze({ speedFactor: 1, timeScale: 1 });

/** Share of the bar the wait takes; the rest is the remux. */
const WAIT_SHARE = 95;
/** Progress steps during the wait: often enough to watch, rare enough for hundreds of jobs. */
const MAX_TICK_MS = 1_000;
const MIN_TICK_MS = 20;

/**
 * An engine without a GPU for dry runs and capacity planning (issue 5): it takes as long as a
 * real one would (`audio seconds × speed factor × time scale`), reporting progress, then returns
 * the template video cut or looped to the audio's length with the audio under it. The video is
 * stream-copied, not encoded, so a 2-core benchmark box can run hundreds of these.
 */
export class SimulateEngine implements Engine {
  readonly name = "simulate";
  readonly capacity: number;
  private readonly settings: SimulateEngineSettings;
  private readonly logger: Logger | undefined;

  constructor(settings: SimulateEngineSettings = SIMULATE_DEFAULTS, options: SimulateEngineOptions = {}) {
    this.capacity = engineCapacity(this.name, options.maxConcurrent);
    for (const [name, value] of Object.entries(settings)) {
      if (!(typeof value === "number" && Number.isFinite(value) && value >= 0)) {
        throw new RangeError(`simulate engine ${name} must be a number ≥ 0, got ${String(value)}`);
      }
    }
    this.settings = settings;
    this.logger = options.logger;
  }

  async run(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    const { signal } = ctx;
    try {
      const audioSec = await audioSeconds(job, signal);
      const waitMs = audioSec * this.settings.speedFactor * this.settings.timeScale * 1000;
      this.logger?.debug({ job_id: job.id, engine: this.name, audioSec, waitMs }, "simulating");
      // The file is made while the clock runs, so a job takes its simulated time, not that plus
      // ffmpeg's: capacity planning and the benchmarks measure the dispatcher, not the remux.
      const made = join(job.workDir, "simulated.mp4");
      await Promise.all([waitWithProgress(waitMs, ctx), writeResult(job, made, audioSec, signal)]);
      // Only a run that lasted its full time delivers, so an aborted one leaves no output.
      await rename(made, job.outputPath);
      ctx.onProgress(100, "done");
    } catch (err) {
      throw blameFfmpegFailure(err, signal, this.name);
    }
  }
}

async function waitWithProgress(totalMs: number, ctx: EngineRunContext): Promise<void> {
  const started = performance.now();
  const tick = Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, totalMs / WAIT_SHARE));
  let reported = -1;
  for (;;) {
    const elapsed = performance.now() - started;
    if (elapsed >= totalMs) return;
    // Whole tens: each report is a status change the gateway follows, so keep them few.
    const percent = Math.floor((WAIT_SHARE * elapsed) / totalMs / 10) * 10;
    if (percent > reported) {
      reported = percent;
      ctx.onProgress(percent, "simulating");
    }
    await sleep(Math.min(tick, totalMs - elapsed), undefined, { signal: ctx.signal });
  }
}

/**
 * `-c:v copy` with `-t`: the cut lands on a packet boundary, within a frame of the audio's
 * length, and `-stream_loop -1` repeats a shorter template. Templates in codecs MP4 cannot hold
 * (ProRes, say) are encoded instead, at the fastest preset.
 */
/**
 * Cheapest first: copy both streams (AAC audio and H.264 video fit MP4 as they are), then encode
 * only the audio (WAV cannot go in MP4), then encode both (a video codec MP4 cannot hold).
 */
const REMUX_TRIES: ReadonlyArray<readonly string[]> = [
  ["-c:v", "copy", "-c:a", "copy"],
  ["-c:v", "copy", "-c:a", "aac"],
  ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
];

async function writeResult(
  job: EngineJob,
  output: string,
  audioSec: number,
  signal: AbortSignal,
): Promise<void> {
  for (const [i, codecs] of REMUX_TRIES.entries()) {
    try {
      await runFfmpeg(remuxArgs(job, output, audioSec, codecs), { signal });
      return;
    } catch (err) {
      if (!(err instanceof FfmpegError) || i === REMUX_TRIES.length - 1) throw err;
    }
  }
}

function remuxArgs(job: EngineJob, output: string, audioSec: number, codecs: readonly string[]): string[] {
  return [
    "-v",
    "error",
    "-stream_loop",
    "-1",
    ...UNTRUSTED_INPUT_ARGS,
    "-i",
    job.videoPath,
    ...UNTRUSTED_INPUT_ARGS,
    "-i",
    job.audioPath,
    "-map",
    "0:v:0",
    "-map",
    "1:a:0",
    ...codecs,
    "-t",
    audioSec.toFixed(6),
    "-movflags",
    "+faststart",
    "-f",
    "mp4",
    output,
  ];
}
