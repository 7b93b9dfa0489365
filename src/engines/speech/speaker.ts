import type { SpeechSettings } from "../../protocol/schemas.js";

/** A voice to clone: its reference recording on this machine's disk, and what the gateway knows of it. */
export interface SpeakVoice {
  readonly id: string;
  readonly referencePath: string;
  readonly referenceSha256: string;
  /** The reference's transcript, when the gateway has one; the machine's ASR makes its own. */
  readonly referenceText?: string | undefined;
}

/** One text job's speech: what to say, and where the WAV goes. */
export interface SpeakJob {
  readonly id: string;
  readonly text: string;
  readonly lang: string;
  readonly voice?: SpeakVoice | undefined;
  readonly settings: SpeechSettings;
  /** Where the speaker must leave the WAV of the whole text. */
  readonly outputPath: string;
  /** A private scratch folder, removed by the worker afterwards. */
  readonly workDir: string;
}

export interface SpeakContext {
  readonly signal: AbortSignal;
  /** How far the speech is, 0–1, and the step in words. */
  onProgress(fraction: number, message?: string): void;
}

/** A voice made usable on this machine (`PUT /v1/voices/{id}`). */
export interface VoiceReady {
  /** What the voice service heard in the reference (its segments joined by a space). */
  readonly referenceText: string;
  /** Whether this call prepared it; false when the machine had it prepared already. */
  readonly prepared: boolean;
}

/**
 * What turns a text job's text into audio before the lip-sync engine runs (issue 12): fish-speech
 * containers (`--tts`), or the offline voice inside the package. `speak` rejects with an
 * `EngineError` whose kind says whose fault a failure is, and stops when `signal` aborts.
 */
export interface Speaker {
  readonly name: string;
  /** Whether it can speak in a voice cloned from a reference (`speech.voice`). */
  readonly canClone: boolean;
  speak(job: SpeakJob, ctx: SpeakContext): Promise<void>;
  /**
   * Makes `voice` ready to speak in on this machine ahead of any text job (`PUT /v1/voices/{id}`):
   * the gateway does so once, when the voice is created. Rejects like `speak`; a speaker that
   * cannot clone (`canClone` false) rejects with VOICE_CLONE_UNAVAILABLE.
   */
  prepareVoice(voice: SpeakVoice, lang: string, signal: AbortSignal): Promise<VoiceReady>;
  close?(): Promise<void>;
}
