import { InputError } from "../../errors.js";
import { SPEECH_BOUNDS, type SpeechSettings } from "../../protocol/schemas.js";

/** The task form's fields of a text task (issue 12): `text` in place of an audio file, and how to say it. */
export const SPEECH_FIELDS = [
  "text",
  "voice_id",
  "lang",
  "temperature",
  "top_p",
  "chunk_length",
  "repetition_penalty",
] as const;
type SettingName = keyof SpeechSettings;
const SETTINGS: readonly SettingName[] = ["temperature", "top_p", "chunk_length", "repetition_penalty"];
const INTEGER_SETTINGS: ReadonlySet<SettingName> = new Set(["chunk_length"]);
/** The language tag the worker protocol accepts (SpeechRequest.lang). */
const LANG = /^[A-Za-z-]{2,16}$/;

/** What a task form asks to be said; the language is the voice's or the default when not given. */
export interface SpeechForm {
  readonly text: string;
  readonly voiceId: string | null;
  readonly lang: string | null;
  readonly settings: SpeechSettings;
}

/**
 * The speech of a task form from its text fields, checked with the worker protocol's own bounds
 * (SPEECH_BOUNDS), so a task the gateway takes is one every worker takes; undefined for a form
 * without `text` (an audio task), which may then carry none of the other speech fields.
 */
export function parseSpeechForm(fields: ReadonlyMap<string, string>): SpeechForm | undefined {
  const raw = fields.get("text");
  if (raw === undefined) {
    // Left empty, as a form that always sends every field does, they say nothing.
    const stray = SPEECH_FIELDS.find((name) => fields.get(name)?.trim());
    if (stray) {
      throw new InputError(
        "MISSING_FIELD",
        `${stray} is for text tasks: send it with text (what to say), or leave it out with an audio file`,
        "text",
      );
    }
    return undefined;
  }
  const text = raw.trim();
  if (text === "") throw new InputError("INVALID_FIELD", "text is empty: say what the video says", "text");
  // UTF-16 units, as the worker's stored job records count them: never more than it accepts.
  if (text.length > SPEECH_BOUNDS.text.maxLength) {
    throw new InputError(
      "INVALID_FIELD",
      `text is ${text.length} characters long; the limit is ${SPEECH_BOUNDS.text.maxLength}`,
      "text",
    );
  }
  const voiceId = fields.get("voice_id")?.trim() || null;
  const lang = fields.get("lang")?.trim() || null;
  if (lang !== null && !LANG.test(lang)) {
    throw new InputError(
      "INVALID_FIELD",
      "lang must be a language code of 2 to 16 letters or hyphens (zh, en, ja…)",
      "lang",
    );
  }
  const settings: SpeechSettings = {};
  for (const name of SETTINGS) {
    const value = fields.get(name)?.trim();
    if (value === undefined || value === "") continue;
    settings[name] = setting(name, value);
  }
  return { text, voiceId, lang, settings };
}

function setting(name: SettingName, value: string): number {
  const { minimum, maximum } = SPEECH_BOUNDS[name];
  const integer = INTEGER_SETTINGS.has(name);
  const n = Number(value);
  if (!Number.isFinite(n) || n < minimum || n > maximum || (integer && !Number.isInteger(n))) {
    throw new InputError(
      "INVALID_FIELD",
      `${name} must be ${integer ? "an integer" : "a number"} from ${minimum} to ${maximum}`,
      name,
    );
  }
  return n;
}
