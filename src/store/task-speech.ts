/**
 * A text task's speech (issue 12), as `tasks.speech` keeps it: what to say, in which language, with
 * which of fish-speech's settings. The voice is a column of its own (`tasks.voice_id`), so that
 * `DELETE /voices/{id}` finds the live tasks that speak in it from an index.
 */
export interface TaskSpeech {
  readonly text: string;
  readonly lang: string;
  readonly settings: SpeechSettingValues;
}

/** fish-speech's names (protocol/schemas.ts SpeechSettings, whose bounds the API checks). */
export interface SpeechSettingValues {
  readonly temperature?: number;
  readonly top_p?: number;
  readonly chunk_length?: number;
  readonly repetition_penalty?: number;
}

/**
 * What a task needs of a machine, from least to most: any machine lip-syncs an uploaded audio; a
 * text task needs one that speaks (`capabilities.tts`); a text task with a voice one that clones.
 */
export type TaskNeed = "lipsync" | "tts" | "voice_clone";
export const TASK_NEEDS: readonly TaskNeed[] = ["lipsync", "tts", "voice_clone"];

export function taskNeed(task: {
  readonly speech: string | null;
  readonly voice_id: string | null;
}): TaskNeed {
  if (task.speech === null) return "lipsync";
  return task.voice_id === null ? "tts" : "voice_clone";
}

/** Whether a machine that can do `can` can take a task that needs `need`. */
export function needMet(need: TaskNeed, can: TaskNeed): boolean {
  return TASK_NEEDS.indexOf(need) <= TASK_NEEDS.indexOf(can);
}

export function encodeTaskSpeech(speech: TaskSpeech): string {
  return JSON.stringify({ text: speech.text, lang: speech.lang, settings: speech.settings });
}

/** The speech of a task row; undefined for a task that uploaded its audio. */
export function decodeTaskSpeech(column: string | null): TaskSpeech | undefined {
  if (column === null) return undefined;
  const parsed = JSON.parse(column) as Partial<TaskSpeech>;
  return { text: parsed.text ?? "", lang: parsed.lang ?? "", settings: parsed.settings ?? {} };
}

/** Characters of scripts spoken about one syllable each (Chinese, Japanese kana, Korean). */
const SYLLABIC = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
const SYLLABIC_ALL = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/gu;
const PAUSE = /[。！？；，、.!?;,:：…]/gu;

/**
 * How long a text will take to say, before it is said: a task's `audio_duration` until the machine
 * has spoken it, for placement (work is proportional to it) and for what the task shows. About 4
 * syllabic characters a second (Mandarin read aloud), 2.5 words a second in alphabetic scripts, and
 * a short pause per punctuation mark; the completing attempt replaces it with the measured length.
 */
export function estimateSpeechSeconds(text: string): number {
  let syllables = 0;
  for (const ch of text) if (SYLLABIC.test(ch)) syllables++;
  const words = text
    .replace(SYLLABIC_ALL, " ")
    .split(/\s+/)
    .filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
  const pauses = text.match(PAUSE)?.length ?? 0;
  const seconds = syllables * 0.25 + words * 0.4 + pauses * 0.2;
  return Math.round(Math.max(0.5, seconds) * 100) / 100;
}
