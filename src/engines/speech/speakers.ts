import type { Logger } from "../../logger.js";
import { EspeakSpeaker } from "./espeak-speaker.js";
import { type FishSpeechSettings, FishSpeechSpeaker } from "./fish-speech-speaker.js";
import type { Speaker } from "./speaker.js";

/**
 * The machine's speaker (issue 12, "Engines and placement"): its fish-speech containers when
 * `--tts` names some; else the offline voice for the ffmpeg engine, which runs on any machine and
 * so speaks on any machine too; else none, and the machine takes no text jobs.
 */
export function createSpeaker(options: {
  readonly engine: string;
  readonly tts?: FishSpeechSettings | undefined;
  /** The worker's data dir: fish-speech voices prepared per instance are remembered under it. */
  readonly dataDir: string;
  readonly logger?: Logger | undefined;
}): Speaker | undefined {
  if (options.tts) {
    return new FishSpeechSpeaker({
      settings: options.tts,
      stateDir: voicesDir(options.dataDir),
      logger: options.logger,
    });
  }
  if (options.engine === "ffmpeg") return new EspeakSpeaker({ logger: options.logger });
  return undefined;
}

/** Where a worker with data dir `dataDir` keeps what its voice services have prepared. */
export function voicesDir(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/voices`;
}
