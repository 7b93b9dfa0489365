import { EngineError, errorMessage } from "../errors.js";
import { MediaError, type MediaInfo, probeMedia } from "../media/probe.js";
import type { EngineJob } from "./engine.js";
import { asAbort } from "./engine-failure.js";

/**
 * How many seconds of audio a job has to speak: the gateway's measure when it sent one (it probed
 * the same bytes at upload), else ffprobe's. No audio stream, or no length, is the input's fault;
 * a probe that cannot run is the machine's; a job aborted meanwhile rejects with its abort.
 */
export async function audioSeconds(
  job: Pick<EngineJob, "audioPath" | "audioDuration">,
  signal: AbortSignal,
): Promise<number> {
  if (job.audioDuration !== undefined && job.audioDuration > 0) return job.audioDuration;
  let info: MediaInfo;
  try {
    info = await probeMedia(job.audioPath, { signal });
  } catch (err) {
    if (signal.aborted) throw asAbort(err, signal);
    if (err instanceof MediaError) throw new EngineError("input", `the audio file: ${err.message}`);
    throw new EngineError("machine", `could not probe the audio: ${errorMessage(err)}`);
  }
  if (!info.audio) throw new EngineError("input", "the audio file has no audio stream");
  const seconds = info.audio.durationSec ?? info.durationSec;
  if (!(seconds > 0)) throw new EngineError("input", "the audio file has no duration");
  return seconds;
}
