import { createHash, randomUUID } from "node:crypto";
import { readFile, rename, stat, writeFile } from "node:fs/promises";
import { extname, join, posix } from "node:path";
import { linkOrCopy } from "../../link-or-copy.js";
import { makeDir } from "../../make-dir.js";
import { runFfmpeg } from "../../media/run-ffmpeg.js";
import type { FishSpeechApi, PreparedReference } from "./fish-speech-api.js";
import type { SpeakVoice } from "./speaker.js";

/** What the server remembers of a voice, as this agent remembers it for one instance. */
interface PreparedVoice {
  readonly voice_id: string;
  readonly reference_sha256: string;
  readonly lang: string;
  readonly texts: readonly string[];
  readonly urls: readonly string[];
  readonly prepared_at: string;
}

interface Memory {
  readonly url: string;
  voices: Record<string, PreparedVoice>;
}

/** The formats the server takes as they are (heygem-tts-contract.md, "format"); others are converted to WAV. */
const SERVER_FORMATS = new Set(["wav", "mp3", "flac"]);

export interface VoicePreparerOptions {
  readonly api: FishSpeechApi;
  /** The host folder mounted at the container's /code/data. */
  readonly instanceDir: string;
  /** This agent's own folder for what it remembers of this instance's voices. */
  readonly memoryFile: string;
}

/**
 * Makes a voice usable on one fish-speech instance (heygem-tts-contract.md, "Preparing a voice"):
 * the first time the instance needs it, its reference goes into the instance's folder and through
 * `/v1/preprocess_and_tran`, and the reply (the transcript and the processed audio's path) is kept
 * in the agent's data dir. Later jobs reuse it while the processed files are still in the
 * instance's folder; a container restarted with an empty voice folder gets the voice prepared
 * again. Callers hold the instance's one-at-a-time lock, so nothing here races.
 */
export class VoicePreparer {
  private memory: Memory | undefined;
  /** How many times a voice was prepared, for logs and tests. */
  prepared = 0;

  constructor(private readonly o: VoicePreparerOptions) {}

  /**
   * The voice's reference as the server knows it; `prepared` says whether this call had to send it
   * through `/v1/preprocess_and_tran` (false: the instance had it already).
   */
  async prepare(
    voice: SpeakVoice,
    lang: string,
    signal: AbortSignal,
  ): Promise<{ reference: PreparedReference; prepared: boolean }> {
    const memory = await this.load();
    const key = memoryKey(voice.referenceSha256, lang);
    const known = memory.voices[key];
    if (known && (await this.stillThere(known.urls)))
      return { reference: withText(known, voice), prepared: false };

    const format = extname(voice.referencePath).slice(1).toLowerCase();
    const ext = SERVER_FORMATS.has(format) ? format : "wav";
    const relative = posix.join("origin_audio", `mh-${voice.referenceSha256}.${ext}`);
    const dest = join(this.o.instanceDir, ...relative.split("/"));
    await makeDir(join(this.o.instanceDir, "origin_audio"));
    if (ext === format) await linkOrCopy(voice.referencePath, dest);
    else {
      await runFfmpeg(["-v", "error", "-y", "-i", voice.referencePath, "-vn", "-c:a", "pcm_s16le", dest], {
        signal,
      });
    }
    const reply = await this.o.api.preprocess({ referenceAudio: relative, format: ext, lang }, signal);
    const entry: PreparedVoice = {
      voice_id: voice.id,
      reference_sha256: voice.referenceSha256,
      lang,
      texts: reply.texts,
      urls: reply.urls,
      prepared_at: new Date().toISOString(),
    };
    memory.voices[key] = entry;
    await this.save(memory);
    this.prepared++;
    return { reference: withText(entry, voice), prepared: true };
  }

  /** Whether this instance prepared the voice before (its files may have gone since). */
  async knows(referenceSha256: string, lang: string): Promise<boolean> {
    return (await this.load()).voices[memoryKey(referenceSha256, lang)] !== undefined;
  }

  /** Whether each processed file the server named is still in the instance's folder. */
  private async stillThere(urls: readonly string[]): Promise<boolean> {
    for (const url of urls) {
      const path = hostPath(this.o.instanceDir, url);
      // A URL or a path outside /code/data cannot be checked from here: trust the memory.
      if (path === undefined) continue;
      try {
        if (!(await stat(path)).isFile()) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  private async load(): Promise<Memory> {
    if (this.memory) return this.memory;
    const url = this.o.api.baseUrl;
    try {
      const parsed = JSON.parse(await readFile(this.o.memoryFile, "utf8")) as Partial<Memory>;
      if (parsed.url === url && typeof parsed.voices === "object" && parsed.voices !== null) {
        this.memory = { url, voices: parsed.voices };
        return this.memory;
      }
    } catch {
      // None yet, or unreadable: the voices are prepared again, which costs time, not correctness.
    }
    this.memory = { url, voices: {} };
    return this.memory;
  }

  private async save(memory: Memory): Promise<void> {
    const tmp = `${this.o.memoryFile}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(memory, null, 1));
    await rename(tmp, this.o.memoryFile);
  }
}

function memoryKey(referenceSha256: string, lang: string): string {
  return `${referenceSha256}:${lang}`;
}

/** The file name under the agent's data dir for one instance's memory. */
export function memoryFileName(url: string): string {
  return `${createHash("sha256").update(url).digest("hex").slice(0, 16)}.json`;
}

/** The gateway's transcript fills in where the server's speech recognition heard nothing. */
function withText(entry: PreparedVoice, voice: SpeakVoice): PreparedReference {
  const texts =
    entry.texts.length === entry.urls.length && entry.texts.some((t) => t.trim() !== "")
      ? entry.texts
      : entry.urls.length === 1 && voice.referenceText
        ? [voice.referenceText]
        : entry.texts;
  return { texts, urls: entry.urls };
}

/** `/code/data/x.wav` or `x.wav` (relative to /code/data) as a host path; undefined for anything else. */
function hostPath(instanceDir: string, url: string): string | undefined {
  if (/^[a-z]+:\/\//i.test(url)) return undefined;
  let relative: string;
  if (url.startsWith("/code/data/")) relative = url.slice("/code/data/".length);
  else if (url.startsWith("/")) return undefined;
  else relative = url;
  const normal = posix.normalize(relative.replace(/\\/g, "/"));
  if (normal.startsWith("..")) return undefined;
  return join(instanceDir, ...normal.split("/"));
}
