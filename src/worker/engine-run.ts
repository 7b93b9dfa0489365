import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, rename, rm, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Engine, EngineJob, EngineRunContext, ResumeState } from "../engines/engine.js";
import type { Speaker, SpeakVoice } from "../engines/speech/speaker.js";
import { durationSeconds, parseWav, WavError } from "../engines/speech/wav.js";
import { EngineError, errorMessage } from "../errors.js";
import { linkOrCopy } from "../link-or-copy.js";
import type { Logger } from "../logger.js";
import { makeDir } from "../make-dir.js";
import { readAudioHeader } from "../media/audio-header.js";
import { MediaError, probeMedia } from "../media/probe.js";
import { readChunkFor } from "../read-chunk.js";
import type { BlobCache } from "./blob-cache.js";
import type { JobInput } from "./job-records.js";
import type { WorkerLayout } from "./layout.js";

export interface EngineRunDeps {
  readonly engine: Engine;
  readonly blobs: BlobCache;
  readonly layout: WorkerLayout;
  /** Speaks text jobs; absent on a machine that cannot (capabilities.tts false). */
  readonly speaker?: Speaker | undefined;
}

/** A text job's progress: 0–30 while it is spoken, 30–100 while it is lip-synced. */
export const SPEECH_SHARE = 30;

export interface JobResult {
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * One engine run for one job, on disk: a private work dir with the inputs linked in, the engine's
 * run, and its MP4 moved to `results/<id>.mp4` and hashed. The work dir is removed whatever
 * happens. Rejects with whatever the engine (or the file system) threw. With `resume`, the engine
 * picks up a job it accepted before the agent restarted instead of starting it.
 *
 * A text job (`input.speech`) is first spoken (step "speech", speech-step below) into
 * `speech/<id>.wav`, which `onSpoken` announces and which the engine then lip-syncs as the job's
 * audio (step "lipsync").
 */
export async function runEngine(
  deps: EngineRunDeps,
  id: string,
  input: JobInput,
  ctx: EngineRunContext,
  log: Logger,
  resume?: ResumeState,
  onSpoken?: (audio: JobResult) => void,
): Promise<JobResult> {
  const workDir = deps.layout.workDir(id);
  try {
    await makeDir(workDir);
    let engineCtx = ctx;
    let audioSource: { sha256: string } | { path: string };
    let audioName = input.audio?.name;
    if (input.speech) {
      const spokenPath = deps.layout.speechPath(id);
      const kept = resume !== undefined && (await exists(spokenPath));
      if (!kept) onSpoken?.(await speak(deps, id, input, workDir, ctx));
      audioSource = { path: spokenPath };
      audioName = "speech.wav";
      engineCtx = {
        ...ctx,
        onProgress: (progress, message) =>
          ctx.onProgress(
            SPEECH_SHARE + (progress * (100 - SPEECH_SHARE)) / 100,
            `lipsync${message === undefined ? "" : `: ${message}`}`,
          ),
      };
    } else if (input.audio) {
      audioSource = { sha256: input.audio.sha256 };
    } else {
      throw new EngineError("input", "the job has neither audio nor speech");
    }
    // Engines such as HeyGem's pick their decoder by file extension, so names keep the original one.
    const job: EngineJob = {
      id,
      audioPath: join(workDir, `audio${extensionOf(audioName, ".wav")}`),
      videoPath: join(workDir, `video${extensionOf(input.video.name, ".mp4")}`),
      outputPath: join(workDir, "output.mp4"),
      workDir,
      options: input.options,
      ...(input.audio_duration === undefined ? {} : { audioDuration: input.audio_duration }),
    };
    if ("sha256" in audioSource) await deps.blobs.linkTo(audioSource.sha256, job.audioPath);
    else await linkOrCopy(audioSource.path, job.audioPath);
    await deps.blobs.linkTo(input.video.sha256, job.videoPath);
    if (resume !== undefined && deps.engine.resume) await deps.engine.resume(job, resume, engineCtx);
    else {
      if (input.max_audio_seconds !== undefined)
        await refuseLongAudio(job.audioPath, input.max_audio_seconds, ctx.signal);
      await deps.engine.run(job, engineCtx);
    }
    return await keepResult(job.outputPath, deps.layout.resultPath(id));
  } finally {
    await rm(workDir, { recursive: true, force: true }).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, "could not remove the work dir");
    });
  }
}

/**
 * Step "speech": the text spoken by the machine's speaker, checked to be audio of some length,
 * kept as `speech/<id>.wav` and hashed. The voice's reference is linked in from the blob cache.
 */
async function speak(
  deps: EngineRunDeps,
  id: string,
  input: JobInput,
  workDir: string,
  ctx: EngineRunContext,
): Promise<JobResult> {
  const speech = input.speech;
  if (!speech) throw new TypeError("not a text job");
  if (!deps.speaker)
    throw new EngineError("machine", "this worker cannot speak text (it has no text-to-speech)");
  const speechDir = join(workDir, "speech");
  await makeDir(speechDir);
  let voice: SpeakVoice | undefined;
  if (speech.voice) {
    const { reference } = speech.voice;
    const referencePath = join(speechDir, `reference${extensionOf(reference.name, ".wav")}`);
    await deps.blobs.linkTo(reference.sha256, referencePath);
    voice = {
      id: speech.voice.id,
      referencePath,
      referenceSha256: reference.sha256,
      referenceText: speech.voice.reference_text,
    };
  }
  const outputPath = join(workDir, "speech.wav");
  ctx.onProgress(0, "speech");
  await deps.speaker.speak(
    {
      id,
      text: speech.text,
      lang: speech.lang,
      voice,
      settings: speech.settings ?? {},
      outputPath,
      workDir: speechDir,
    },
    {
      signal: ctx.signal,
      onProgress: (fraction, message) =>
        ctx.onProgress(Math.min(1, Math.max(0, fraction)) * SPEECH_SHARE, message ?? "speech"),
    },
  );
  let seconds = 0;
  try {
    seconds = durationSeconds(parseWav(await readFile(outputPath)));
  } catch (err) {
    if (!(err instanceof WavError) && (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (!(seconds > 0)) throw new EngineError("machine", `${deps.speaker.name} produced no audio for the text`);
  ctx.onProgress(SPEECH_SHARE, `speech: ${seconds.toFixed(1)} s spoken`);
  return keepResult(outputPath, deps.layout.speechPath(id));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function keepResult(outputPath: string, dest: string): Promise<JobResult> {
  try {
    await rename(outputPath, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    throw new EngineError("machine", "the engine reported success but left no result file");
  }
  const { size } = await stat(dest);
  const hash = createHash("sha256");
  await pipeline(createReadStream(dest, { highWaterMark: readChunkFor(size) }), hash);
  return { sha256: hash.digest("hex"), bytes: size };
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
