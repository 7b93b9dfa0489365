import type { BlobStore, StagedBlob } from "../blobs/blob-store.js";
import { errorMessage } from "../errors.js";
import type { WorkerClient } from "../protocol/worker-client.js";
import type { StoredAudio } from "../store/task-store.js";
import type { MediaInspector } from "./media-inspector.js";

/** The name a text task's audio gets once spoken (the worker speaks WAV). */
export const SPOKEN_AUDIO_NAME = "speech.wav";

/** A text task's spoken audio, staged in the gateway's blob store and measured. */
export interface SpokenAudio {
  readonly staged: StagedBlob;
  readonly audio: StoredAudio;
}

/**
 * Brings home what a worker spoke for a text task (GET /v1/jobs/{id}/audio, issue 12), checked
 * against the hash the job reported and measured as the gateway measures any audio. Anything else
 * — a damaged or unreadable file — is `damaged(reason)`: the machine's failure, since the text was
 * fine enough for it to report success.
 */
export async function fetchSpokenAudio(
  deps: { client: WorkerClient; blobs: BlobStore; inspector: MediaInspector },
  jobId: string,
  expected: { readonly sha256: string },
  signal: AbortSignal,
  damaged: (reason: string) => Error,
): Promise<SpokenAudio> {
  const body = await deps.client.speechAudio(jobId, signal);
  const staged = await deps.blobs.stage(body, {
    expectedSha256: expected.sha256,
    signal,
    onMismatch: (actual) =>
      damaged(`spoken audio arrived damaged (sha256 ${actual}, expected ${expected.sha256})`),
  });
  try {
    const media = await deps.inspector.inspect(staged, "audio");
    return {
      staged,
      audio: {
        sha256: staged.sha256,
        bytes: staged.bytes,
        name: SPOKEN_AUDIO_NAME,
        duration: media.durationSec,
      },
    };
  } catch (err) {
    await staged.discard();
    throw damaged(`the spoken audio is not readable audio: ${errorMessage(err)}`);
  }
}
