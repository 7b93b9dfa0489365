import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Engine, EngineJob, EngineRunContext, ResumeState } from "../engines/engine.js";
import { EngineError, errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { readAudioHeader } from "../media/audio-header.js";
import { MediaError, probeMedia } from "../media/probe.js";
import type { BlobCache } from "./blob-cache.js";
import type { JobInput } from "./job-records.js";
import type { WorkerLayout } from "./layout.js";

export interface EngineRunDeps {
  readonly engine: Engine;
  readonly blobs: BlobCache;
  readonly layout: WorkerLayout;
}

export interface JobResult {
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * One engine run for one job, on disk: a private work dir with the inputs linked in, the engine's
 * run, and its MP4 moved to `results/<id>.mp4` and hashed. The work dir is removed whatever
 * happens. Rejects with whatever the engine (or the file system) threw. With `resume`, the engine
 * picks up a job it accepted before the agent restarted instead of starting it.
 */
export async function runEngine(
  deps: EngineRunDeps,
  id: string,
  input: JobInput,
  ctx: EngineRunContext,
  log: Logger,
  resume?: ResumeState,
): Promise<JobResult> {
  const workDir = deps.layout.workDir(id);
  try {
    await mkdir(workDir, { recursive: true });
    // Engines such as HeyGem's pick their decoder by file extension, so names keep the original one.
    const job: EngineJob = {
      id,
      audioPath: join(workDir, `audio${extensionOf(input.audio.name, ".wav")}`),
      videoPath: join(workDir, `video${extensionOf(input.video.name, ".mp4")}`),
      outputPath: join(workDir, "output.mp4"),
      workDir,
      options: input.options,
      ...(input.audio_duration === undefined ? {} : { audioDuration: input.audio_duration }),
    };
    await deps.blobs.linkTo(input.audio.sha256, job.audioPath);
    await deps.blobs.linkTo(input.video.sha256, job.videoPath);
    if (resume !== undefined && deps.engine.resume) await deps.engine.resume(job, resume, ctx);
    else {
      if (input.max_audio_seconds !== undefined)
        await refuseLongAudio(job.audioPath, input.max_audio_seconds, ctx.signal);
      await deps.engine.run(job, ctx);
    }
    return await keepResult(job.outputPath, deps.layout.resultPath(id));
  } finally {
    await rm(workDir, { recursive: true, force: true }).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, "could not remove the work dir");
    });
  }
}

async function keepResult(outputPath: string, dest: string): Promise<JobResult> {
  try {
    await rename(outputPath, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    throw new EngineError("machine", "the engine reported success but left no result file");
  }
  const hash = createHash("sha256");
  await pipeline(createReadStream(dest), hash);
  return { sha256: hash.digest("hex"), bytes: (await stat(dest)).size };
}

/**
 * The job's audio limit, measured here rather than taken from the job's `audio_duration`: the
 * worker does not rely on what it was told the file is (issue 9, "bounded work"). One place for
 * every engine, HeyGem's included, before any of them spends GPU time on it.
 */
async function refuseLongAudio(audioPath: string, maxSeconds: number, signal: AbortSignal): Promise<void> {
  let seconds: number;
  try {
    // Common audio is read from its headers in process, so the check costs no ffprobe start.
    const media = (await readAudioHeader(audioPath)) ?? (await probeMedia(audioPath, { signal }));
    seconds = media.durationSec;
  } catch (err) {
    if (err instanceof MediaError) throw new EngineError("input", `the audio file: ${err.message}`);
    throw err;
  }
  if (seconds > maxSeconds) {
    throw new EngineError(
      "input",
      `the audio is ${Math.round(seconds)} s long; this worker was told to refuse more than ${maxSeconds} s`,
    );
  }
}

/** Only a plain extension from a client-chosen name; anything odd falls back to the default. */
function extensionOf(name: string | undefined, fallback: string): string {
  const ext = name === undefined ? "" : extname(name).toLowerCase();
  return /^\.[a-z0-9]{1,8}$/.test(ext) ? ext : fallback;
}
