import { EngineError, errorMessage } from "../errors.js";
import { BinaryNotFoundError } from "../media/ffmpeg-binaries.js";
import { MediaError } from "../media/probe.js";
import { AbortError, FfmpegError, isAbortError } from "../media/run-ffmpeg.js";

/** The job's abort, as an AbortError, whatever the aborted step happened to throw. */
export function asAbort(err: unknown, signal: AbortSignal): Error {
  return isAbortError(err) && err instanceof Error
    ? err
    : new AbortError("job aborted", { cause: signal.reason });
}

/**
 * Whose fault the failure of an engine built on ffmpeg is, decided once where the engine knows
 * (house-style.md). Its inputs were probed first, and their MediaErrors became `input` failures
 * there, so what is left is the machine's: ffmpeg failing, a binary missing, an unreadable file of
 * the engine's own making. An abort stays an abort, and an EngineError keeps its kind.
 */
export function blameFfmpegFailure(err: unknown, signal: AbortSignal, engine: string): Error {
  if (signal.aborted) return asAbort(err, signal);
  if (err instanceof EngineError) return err;
  if (isAbortError(err) && err instanceof Error) return err;
  if (err instanceof MediaError) return new EngineError("machine", `intermediate file: ${err.message}`);
  if (err instanceof FfmpegError || err instanceof BinaryNotFoundError) {
    return new EngineError("machine", err.message);
  }
  return new EngineError("machine", `${engine} engine: ${errorMessage(err)}`);
}
