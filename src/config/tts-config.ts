import { dirname, resolve } from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import type { FishSpeechSettings, TtsInstanceConfig } from "../engines/speech/fish-speech-speaker.js";
import { ConfigError } from "../errors.js";
import { checkInstance, parseInstanceFlag } from "./heygem-config.js";
import type { Settings } from "./options.js";
import type { TTS_OPTIONS } from "./worker-options.js";

const EXAMPLE = "http://127.0.0.1:18180=/home/me/heygem_data/voice/data";

/** The `tts` section of worker.json: fish-speech containers, as `heygem.instances` lists HeyGem's. */
export const TtsSection = Type.Object(
  {
    instances: Type.Array(
      Type.Object(
        {
          url: Type.String({
            pattern: "^https?://",
            description: "The container's API, e.g. http://127.0.0.1:18180",
          }),
          data_dir: Type.String({ minLength: 1, description: "The host folder mounted at its /code/data" }),
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type TtsSection = Static<typeof TtsSection>;

/**
 * The fish-speech speaker's instances: `--tts` flags (paths relative to `cwd`) replace worker.json's
 * `tts.instances` (paths relative to the file). undefined when neither names one.
 */
export function resolveTtsSettings(
  options: Settings<typeof TTS_OPTIONS>,
  file: { readonly path: string; readonly section: TtsSection | undefined } | undefined,
  cwd: string,
): FishSpeechSettings | undefined {
  const flagged = options.tts?.length ? options.tts : undefined;
  let instances: TtsInstanceConfig[];
  if (flagged) {
    instances = flagged
      .flatMap((value) => value.split(","))
      .map((entry) => entry.trim())
      .filter((entry) => entry !== "")
      .map((entry) => parseInstanceFlag(entry, cwd, "--tts", EXAMPLE));
  } else if (file?.section) {
    const path = file.path;
    instances = file.section.instances.map((entry, i) =>
      checkInstance(
        { name: entry.name, url: entry.url, dataDir: resolve(dirname(path), entry.data_dir) },
        path,
        `tts.instances[${i}]`,
      ),
    );
  } else {
    return undefined;
  }
  if (instances.length === 0) return undefined;
  const urls = new Set<string>();
  for (const instance of instances) {
    if (urls.has(instance.url))
      throw new ConfigError(
        flagged ? "--tts" : (file?.path ?? "--tts"),
        "",
        `instance ${instance.url} is listed twice`,
      );
    urls.add(instance.url);
  }
  return Object.freeze({ instances: Object.freeze(instances.map((i) => Object.freeze(i))) });
}
