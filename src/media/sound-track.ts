import { runFfmpeg } from "./run-ffmpeg.js";
import { UNTRUSTED_INPUT_ARGS } from "./untrusted-input.js";

/**
 * Writes the first sound track of a video to `outPath` as a mono 16-bit WAV of at most
 * `maxSeconds`, as HeyGem's desktop client takes a voice from an avatar's video with ffmpeg
 * (heygem-tts-contract.md, "The desktop client makes a voice from an avatar"). Mono loses nothing
 * a speech recogniser or a voice cloner uses, and halves what crosses to each machine. The video
 * came from a client, so ffmpeg opens it under the upload locks (untrusted-input.ts).
 */
export async function extractSoundTrack(
  videoPath: string,
  outPath: string,
  options: { readonly maxSeconds: number; readonly signal?: AbortSignal },
): Promise<void> {
  await runFfmpeg(
    [
      "-v",
      "error",
      ...UNTRUSTED_INPUT_ARGS,
      "-i",
      videoPath,
      "-map",
      "0:a:0",
      "-vn",
      "-t",
      String(options.maxSeconds),
      "-ac",
      "1",
      "-c:a",
      "pcm_s16le",
      "-f",
      "wav",
      outPath,
    ],
    options.signal ? { signal: options.signal } : {},
  );
}
