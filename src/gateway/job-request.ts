import type { BlobRef, JobOptions, PutJobBody, SpeechRequest } from "../protocol/schemas.js";
import type { TaskRow, VoiceRow } from "../store/schema.js";
import { decodeTaskSpeech } from "../store/task-speech.js";

/** A blob the worker must hold for a job, under the job body's field for it (BLOB_MISSING names it). */
export interface JobInputBlob extends BlobRef {
  readonly field: "audio" | "video" | "speech.voice.reference";
}

/** A task's job for a worker (PUT /v1/jobs/{id}), and the blobs the worker must hold for it. */
export interface JobRequest {
  readonly body: PutJobBody;
  /** Video first: the one worth sending ahead, and the one a machine most often holds already. */
  readonly inputs: readonly JobInputBlob[];
}

const videoRef = (task: TaskRow): BlobRef => ({
  sha256: task.video_sha256,
  bytes: task.video_bytes,
  name: task.video_name,
});
const audioRef = (task: TaskRow): BlobRef => ({
  sha256: task.audio_sha256,
  bytes: task.audio_bytes,
  name: task.audio_name,
});

/**
 * The blobs of a task's job that the task itself names, video first: its template and, unless it
 * speaks a text (issue 12), its uploaded audio. A text task with a voice needs the voice's
 * recording too, which only the voice's row names (`jobRequest` adds it).
 */
export function taskInputs(task: TaskRow): JobInputBlob[] {
  const video: JobInputBlob = { ...videoRef(task), field: "video" };
  return task.speech === null ? [video, { ...audioRef(task), field: "audio" }] : [video];
}

/**
 * The job of a task: its uploaded audio, or for a text task (issue 12) its `speech` — the text, the
 * language, the settings and, for a task with a voice, the voice's reference recording as a blob
 * the worker is sent like any input (`voice`: the task's voice row, which must exist).
 */
export function jobRequest(task: TaskRow, voice: VoiceRow | undefined, maxAudioSeconds: number): JobRequest {
  const video = videoRef(task);
  const options = JSON.parse(task.options) as JobOptions;
  const inputs = taskInputs(task);
  const said = decodeTaskSpeech(task.speech);
  if (!said) {
    return {
      body: {
        audio: audioRef(task),
        video,
        options,
        audio_duration: task.audio_duration,
        max_audio_seconds: maxAudioSeconds,
      },
      inputs,
    };
  }
  const speech: SpeechRequest = {
    text: said.text,
    lang: said.lang,
    ...(Object.keys(said.settings).length > 0 ? { settings: said.settings } : {}),
  };
  if (voice) {
    const reference: BlobRef = { sha256: voice.sha256, bytes: voice.bytes, name: voice.file_name };
    speech.voice = {
      id: voice.id,
      reference,
      ...(voice.reference_text === null ? {} : { reference_text: voice.reference_text }),
    };
    inputs.push({ ...reference, field: "speech.voice.reference" });
  }
  // No audio_duration: the text's length is an estimate; the worker measures what it spoke
  // against max_audio_seconds before lip-syncing it.
  return { body: { speech, video, options, max_audio_seconds: maxAudioSeconds }, inputs };
}
