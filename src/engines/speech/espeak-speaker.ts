import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { AppError, EngineError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { SpeakContext, Speaker, SpeakJob, SpeakVoice, VoiceReady } from "./speaker.js";
import { splitText } from "./text-split.js";
import { joinWavs } from "./wav.js";

/**
 * The program of the child process that runs espeak-ng's WebAssembly build: it reads
 * `{module, wasm, voice, parts, outDir}` as JSON on stdin, compiles the 18 MB module once, speaks
 * each part with espeak-ng's own command line (`-w` a WAV in its in-memory file system, the text
 * read from a file there, so a text that starts with "-" is no option) and writes
 * `<outDir>/part-<i>.wav`, printing `part <i>` as each is done. Exit 2: the voice does not exist.
 */
const CHILD_PROGRAM = `
import { readFileSync, writeFileSync } from "node:fs";
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const { default: ESpeakNg } = await import(job.module);
const compiled = await WebAssembly.compile(readFileSync(job.wasm));
for (const [i, text] of job.parts.entries()) {
  const errors = [];
  const es = await ESpeakNg({
    arguments: ["-v", job.voice, "-w", "/out.wav", "-f", "/in.txt"],
    preRun: [(m) => m.FS.writeFile("/in.txt", text)],
    print: () => {},
    printErr: (line) => errors.push(line),
    instantiateWasm: (imports, done) => {
      WebAssembly.instantiate(compiled, imports).then((instance) => done(instance));
      return {};
    },
  });
  let wav;
  try { wav = es.FS.readFile("/out.wav"); } catch { wav = undefined; }
  if (!wav || wav.length <= 44) {
    const words = errors.filter((e) => !e.includes("keepRuntimeAlive")).join("; ");
    process.stderr.write(words || "espeak-ng wrote no audio");
    process.exit(/voice does not exist/i.test(words) ? 2 : wav ? 3 : 1);
  }
  writeFileSync(job.outDir + "/part-" + i + ".wav", wav);
  process.stdout.write("part " + i + "\\n");
}
`;

/** Languages as the gateway names them (fish-speech's `lang`) → espeak-ng's voices. */
const VOICES: Readonly<Record<string, string>> = {
  zh: "cmn",
  "zh-cn": "cmn",
  cmn: "cmn",
  "zh-tw": "cmn",
  yue: "yue",
  "zh-hk": "yue",
  en: "en",
  "en-us": "en-us",
  "en-gb": "en",
  ja: "ja",
};

export const ESPEAK_DEFAULTS = Object.freeze({
  /** Characters per espeak-ng run: each run holds its WAV in WebAssembly memory. */
  maxChars: 1_000,
  /** Deadline of the child process: a start (compiling the module) plus so much per character. */
  baseTimeoutMs: 30_000,
  perCharTimeoutMs: 50,
});

export interface EspeakSpeakerOptions {
  readonly logger?: Logger | undefined;
  readonly baseTimeoutMs?: number;
  readonly perCharTimeoutMs?: number;
}

/**
 * The offline voice every worker has (issue 12: "The embedded default speaks too, on a fresh
 * machine with no GPU"): espeak-ng compiled to WebAssembly, from npm (`espeak-ng`), its voices
 * inside the package. It runs in a child process, so a deadline can end it (a WebAssembly call
 * cannot be interrupted in process) and its memory goes with it. It speaks with its own voice and
 * cannot clone one.
 */
export class EspeakSpeaker implements Speaker {
  readonly name = "espeak-ng";
  readonly canClone = false;

  constructor(private readonly o: EspeakSpeakerOptions = {}) {}

  async speak(job: SpeakJob, ctx: SpeakContext): Promise<void> {
    if (job.voice) {
      throw new EngineError(
        "input",
        `this machine speaks with its offline voice (espeak-ng) only, which cannot clone voice ${job.voice.id}; ` +
          "send the task to a machine with a fish-speech container (capabilities.voice_clone)",
      );
    }
    const parts = splitText(job.text, ESPEAK_DEFAULTS.maxChars);
    if (parts.length === 0)
      throw new EngineError("input", "the text has nothing to speak (no letter or digit)");
    const lang = job.lang.toLowerCase();
    const voice = VOICES[lang] ?? lang;
    ctx.onProgress(0, `speech: speaking ${parts.length} part${parts.length === 1 ? "" : "s"} offline`);
    const chars = parts.reduce((n, p) => n + [...p].length, 0);
    const timeoutMs =
      (this.o.baseTimeoutMs ?? ESPEAK_DEFAULTS.baseTimeoutMs) +
      chars * (this.o.perCharTimeoutMs ?? ESPEAK_DEFAULTS.perCharTimeoutMs);
    await runChild({ voice, parts, outDir: job.workDir }, timeoutMs, ctx, (done) =>
      ctx.onProgress(done / parts.length, `speech: part ${done} of ${parts.length} spoken`),
    );
    const audio = await Promise.all(parts.map((_p, i) => readFile(join(job.workDir, `part-${i}.wav`))));
    await writeFile(job.outputPath, await joinWavs(audio, { workDir: job.workDir, signal: ctx.signal }));
    this.o.logger?.debug({ job_id: job.id, parts: parts.length, voice }, "text spoken offline");
  }

  async prepareVoice(voice: SpeakVoice): Promise<VoiceReady> {
    throw new AppError(
      "VOICE_CLONE_UNAVAILABLE",
      `this machine speaks with its offline voice (espeak-ng) only, which cannot clone voice ${voice.id}; ` +
        "voices are prepared on machines with a fish-speech container (--tts)",
    );
  }
}

function espeakFiles(): { module: string; wasm: string } {
  const module = createRequire(import.meta.url).resolve("espeak-ng");
  return { module, wasm: module.replace(/\.js$/, ".wasm") };
}

async function runChild(
  job: { voice: string; parts: string[]; outDir: string },
  timeoutMs: number,
  ctx: SpeakContext,
  onPart: (done: number) => void,
): Promise<void> {
  const { module, wasm } = espeakFiles();
  const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD_PROGRAM], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  let done = 0;
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-2_000);
  });
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    for (const line of s.split("\n")) if (line.startsWith("part ")) onPart(++done);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const onAbort = () => child.kill("SIGKILL");
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  child.stdin.on("error", () => {});
  child.stdin.end(JSON.stringify({ module: `file://${module}`, wasm, ...job }));
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (exit) => resolve(exit));
    });
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (timedOut) throw new EngineError("machine", `espeak-ng did not finish within ${timeoutMs} ms`);
    if (code === 2) throw new EngineError("input", `espeak-ng has no voice for language "${job.voice}"`);
    if (code === 3) throw new EngineError("input", `espeak-ng found nothing to say: ${stderr.trim()}`);
    if (code !== 0) throw new EngineError("machine", `espeak-ng failed (exit ${code}): ${stderr.trim()}`);
  } catch (err) {
    if (err instanceof EngineError || ctx.signal.aborted) throw err;
    throw new EngineError("machine", `espeak-ng could not start: ${String(err)}`);
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener("abort", onAbort);
  }
}
