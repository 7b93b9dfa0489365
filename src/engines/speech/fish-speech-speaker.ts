import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EngineError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { makeDir } from "../../make-dir.js";
import { FishSpeechApi, FishSpeechTextTooLongError, type PreparedReference } from "./fish-speech-api.js";
import { blameSpeechFailure } from "./fish-speech-failures.js";
import { InstanceLock } from "./instance-lock.js";
import type { SpeakContext, Speaker, SpeakJob, SpeakVoice, VoiceReady } from "./speaker.js";
import { splitText } from "./text-split.js";
import { memoryFileName, VoicePreparer } from "./voice-preparer.js";
import { joinWavs } from "./wav.js";

/** One fish-speech container: its API and the host folder mounted at its /code/data. */
export interface TtsInstanceConfig {
  readonly name: string;
  readonly url: string;
  readonly dataDir: string;
}

export interface FishSpeechSettings {
  readonly instances: readonly TtsInstanceConfig[];
}

/** The bounds below are not flags yet: a sentence takes seconds on a GPU, an ASR pass tens of them. */
export const FISH_SPEECH_DEFAULTS = Object.freeze({
  /** Characters per request; the server's `max_text_length` is larger on every build seen. */
  maxChars: 200,
  /** A part that is refused as too long is halved, down to this. */
  minChars: 20,
  prepareTimeoutMs: 180_000,
  invokeTimeoutMs: 180_000,
});

export interface FishSpeechSpeakerOptions {
  readonly settings: FishSpeechSettings;
  /** The agent's data dir: what each instance has prepared is remembered under it. */
  readonly stateDir: string;
  readonly logger?: Logger | undefined;
  readonly maxChars?: number;
  readonly prepareTimeoutMs?: number;
  readonly invokeTimeoutMs?: number;
}

interface Instance {
  readonly config: TtsInstanceConfig;
  readonly api: FishSpeechApi;
  readonly lock: InstanceLock;
  readonly voices: VoicePreparer;
}

/**
 * Speaks with HeyGem's fish-speech containers (`--tts URL=DIR`, heygem-tts-contract.md): a job
 * takes the least loaded instance and holds it, one job at a time, while its voice is prepared
 * there (once per instance, voice-preparer.ts) and its text is spoken part by part, the parts
 * cut at sentence ends and joined sample by sample.
 */
export class FishSpeechSpeaker implements Speaker {
  readonly name = "fish-speech";
  readonly canClone = true;
  private readonly list: Instance[];
  private readonly maxChars: number;
  private readonly log: Logger | undefined;

  constructor(private readonly o: FishSpeechSpeakerOptions) {
    if (o.settings.instances.length === 0)
      throw new RangeError("fish-speech needs at least one instance (--tts URL=DIR)");
    this.maxChars = o.maxChars ?? FISH_SPEECH_DEFAULTS.maxChars;
    this.log = o.logger?.child({ speaker: this.name });
    this.list = o.settings.instances.map((config) => {
      const api = new FishSpeechApi({
        baseUrl: config.url,
        prepareTimeoutMs: o.prepareTimeoutMs ?? FISH_SPEECH_DEFAULTS.prepareTimeoutMs,
        invokeTimeoutMs: o.invokeTimeoutMs ?? FISH_SPEECH_DEFAULTS.invokeTimeoutMs,
      });
      const voices = new VoicePreparer({
        api,
        instanceDir: config.dataDir,
        memoryFile: join(o.stateDir, memoryFileName(api.baseUrl)),
      });
      return { config, api, lock: new InstanceLock(), voices };
    });
  }

  /** How many times each instance prepared a voice (by name), for tests and logs. */
  preparedCounts(): Record<string, number> {
    return Object.fromEntries(this.list.map((i) => [i.config.name, i.voices.prepared]));
  }

  async speak(job: SpeakJob, ctx: SpeakContext): Promise<void> {
    const parts = splitText(job.text, this.maxChars);
    if (parts.length === 0)
      throw new EngineError("input", "the text has nothing to speak (no letter or digit)");
    await makeDir(this.o.stateDir);
    const instance = this.pick();
    const log = this.log?.child({ job_id: job.id, instance: instance.config.name });
    await instance.lock.run(ctx.signal, async () => {
      let reference: PreparedReference | undefined;
      if (job.voice) {
        ctx.onProgress(0, `speech: preparing voice ${job.voice.id}`);
        try {
          reference = (await instance.voices.prepare(job.voice, job.lang, ctx.signal)).reference;
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          throw blameSpeechFailure(err, "prepare");
        }
      }
      const audio: Buffer[] = [];
      const queue = [...parts];
      let done = 0;
      while (queue.length > 0) {
        const text = queue.shift() ?? "";
        ctx.onProgress(
          done / (done + queue.length + 1),
          `speech: part ${done + 1} of ${done + queue.length + 1}`,
        );
        try {
          audio.push(await instance.api.invoke({ text, reference, ...job.settings }, ctx.signal));
          done++;
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          // The server's limit is its own setting: a part it finds too long is halved and tried again.
          const chars = [...text].length;
          if (err instanceof FishSpeechTextTooLongError && chars > FISH_SPEECH_DEFAULTS.minChars) {
            queue.unshift(...splitText(text, Math.max(FISH_SPEECH_DEFAULTS.minChars, Math.ceil(chars / 2))));
            continue;
          }
          throw blameSpeechFailure(err, "speak");
        }
      }
      await writeFile(job.outputPath, await joinWavs(audio, { workDir: job.workDir, signal: ctx.signal }));
      log?.debug({ parts: audio.length }, "text spoken");
    });
  }

  /**
   * Prepares the voice on one instance (the least loaded of those that prepared it before, else
   * the least loaded), holding it like a job does. Fails as `input` when the server heard no
   * speech in the reference: no text could be spoken in such a voice.
   */
  async prepareVoice(voice: SpeakVoice, lang: string, signal: AbortSignal): Promise<VoiceReady> {
    await makeDir(this.o.stateDir);
    const instance = await this.pickFor(voice.referenceSha256, lang);
    const log = this.log?.child({ voice_id: voice.id, instance: instance.config.name });
    return instance.lock.run(signal, async () => {
      let ready: { reference: PreparedReference; prepared: boolean };
      try {
        ready = await instance.voices.prepare(voice, lang, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        throw blameSpeechFailure(err, "prepare");
      }
      const referenceText = ready.reference.texts
        .map((t) => t.trim())
        .filter((t) => t !== "")
        .join(" ");
      if (referenceText === "") {
        throw new EngineError(
          "input",
          "the voice service heard no speech in the reference recording: send a recording of someone speaking",
        );
      }
      log?.info({ prepared: ready.prepared, segments: ready.reference.urls.length }, "voice ready");
      return { referenceText, prepared: ready.prepared };
    });
  }

  private async pickFor(referenceSha256: string, lang: string): Promise<Instance> {
    const knowing: Instance[] = [];
    for (const instance of this.list)
      if (await instance.voices.knows(referenceSha256, lang)) knowing.push(instance);
    return leastLoaded(knowing.length > 0 ? knowing : this.list);
  }

  private pick(): Instance {
    return leastLoaded(this.list);
  }
}

function leastLoaded(instances: readonly Instance[]): Instance {
  let best = instances[0] as Instance;
  for (const instance of instances) if (instance.lock.load < best.lock.load) best = instance;
  return best;
}
