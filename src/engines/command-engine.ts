import { stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { ConfigError, EngineError, errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { MediaError, probeMedia } from "../media/probe.js";
import { isAbortError } from "../media/run-ffmpeg.js";
import { audioSeconds } from "./audio-seconds.js";
import { runInProcessGroup } from "./command-process.js";
import { type CommandTemplate, type Placeholder, renderCommand } from "./command-template.js";
import { type Engine, type EngineJob, type EngineRunContext, engineCapacity } from "./engine.js";
import { asAbort } from "./engine-failure.js";

/** What `--command`, `--command-timeout`, `--command-input-exit-codes` and `--command-cwd` say. */
export interface CommandEngineSettings {
  readonly template: CommandTemplate;
  /** Kill a command that runs longer; undefined: no limit. */
  readonly timeoutMs: number | undefined;
  /** Exit codes by which the command says the input is at fault (no face found, say). */
  readonly inputExitCodes: readonly number[];
  /** Where the command runs; undefined: the job's own work dir. */
  readonly cwd: string | undefined;
}

export interface CommandEngineOptions {
  /** Jobs at once (default 1). */
  readonly maxConcurrent?: number | undefined;
  readonly logger?: Logger | undefined;
  /** The environment the command inherits (default: the worker's own). */
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** Between SIGTERM and SIGKILL when a command is stopped (default 5 s). */
  readonly killGraceMs?: number | undefined;
}

/** How much of the command's last words goes into a failure message. */
const TAIL_LINES = 20;
const TAIL_CHARS = 2048;

/**
 * Any lip-sync CLI (Wav2Lip, MuseTalk, LatentSync inference scripts) as an engine (issue 3): the
 * template is rendered with the job's file names into argv and run without a shell, in the job's
 * work dir. Exit 0 with a video at `{output}` is success; anything else fails the job, with the
 * tail of what the command printed as the reason.
 */
export class CommandEngine implements Engine {
  readonly name = "command";
  readonly capacity: number;
  private readonly settings: CommandEngineSettings;
  private readonly logger: Logger | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly killGraceMs: number;

  constructor(settings: CommandEngineSettings | undefined, options: CommandEngineOptions = {}) {
    if (!settings) {
      throw new ConfigError("--command", "", "the command engine needs a command template (--command)");
    }
    this.capacity = engineCapacity(this.name, options.maxConcurrent);
    this.settings = settings;
    this.logger = options.logger;
    this.env = options.env ?? process.env;
    this.killGraceMs = options.killGraceMs ?? 5_000;
  }

  async run(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    const { signal } = ctx;
    const { template } = this.settings;
    const log = this.logger?.child({ job_id: job.id, engine: this.name });
    const argv = renderCommand(template, await this.placeholderValues(job, signal));
    const progress = progressReporter(ctx);
    const tails = { stdout: new OutputTail(), stderr: new OutputTail() };
    progress.report(0, `running ${basename(argv[0] ?? "")}`);
    log?.debug({ argv }, "running command");

    let exit: Awaited<ReturnType<typeof runInProcessGroup>>;
    try {
      exit = await runInProcessGroup(argv, {
        cwd: this.settings.cwd ?? job.workDir,
        env: commandEnv(this.env, job.id),
        signal,
        timeoutMs: this.settings.timeoutMs,
        killGraceMs: this.killGraceMs,
        onLine: (line, stream) => {
          const reported = parseProgressLine(line);
          if (reported) {
            progress.report(reported.percent, reported.message);
            return;
          }
          if (line.trim() === "") return;
          tails[stream].push(line);
          log?.debug({ stream }, line);
        },
      });
    } catch (err) {
      if (isAbortError(err) || signal.aborted) throw asAbort(err, signal);
      throw new EngineError("machine", `cannot start ${JSON.stringify(argv[0])}: ${errorMessage(err)}`);
    }
    if (signal.aborted) throw asAbort(undefined, signal);

    const said = tails.stderr.text() || tails.stdout.text();
    const words = said ? `: ${said}` : "";
    log?.info({ code: exit.code, signal: exit.signal, timed_out: exit.timedOut }, "command exited");
    if (exit.timedOut) {
      const seconds = (this.settings.timeoutMs ?? 0) / 1000;
      throw new EngineError(
        "machine",
        `the command ran past --command-timeout (${seconds} s) and was killed${words}`,
      );
    }
    if (exit.code === null) {
      throw new EngineError("machine", `the command was killed by ${exit.signal ?? "a signal"}${words}`);
    }
    if (exit.code !== 0) {
      if (this.settings.inputExitCodes.includes(exit.code)) {
        throw new EngineError("input", `the command rejected the input (exit code ${exit.code})${words}`);
      }
      throw new EngineError("machine", `the command failed (exit code ${exit.code})${words}`);
    }
    await checkOutput(job.outputPath, words, signal);
    progress.done();
  }

  private async placeholderValues(
    job: EngineJob,
    signal: AbortSignal,
  ): Promise<Partial<Record<Placeholder, string>>> {
    const values: Partial<Record<Placeholder, string>> = {
      // Absolute, so that they hold whatever the command's cwd, and never start with "-".
      audio: resolve(job.audioPath),
      video: resolve(job.videoPath),
      output: resolve(job.outputPath),
      workdir: resolve(job.workDir),
      job_id: job.id,
    };
    if (this.settings.template.placeholders.has("audio_duration")) {
      values.audio_duration = (await audioSeconds(job, signal)).toFixed(3);
    }
    return values;
  }
}

/**
 * The worker's environment, so CUDA_VISIBLE_DEVICES, conda paths and the like reach the model, but
 * not the worker's own MULTI_HEYGEM_* settings: the worker token has no business in a model script.
 * Python unbuffered, or its progress lines would arrive only at exit.
 */
function commandEnv(env: NodeJS.ProcessEnv, jobId: string): NodeJS.ProcessEnv {
  const own = Object.entries(env).filter(([key]) => !key.startsWith("MULTI_HEYGEM_"));
  return { PYTHONUNBUFFERED: "1", ...Object.fromEntries(own), MULTI_HEYGEM_JOB_ID: jobId };
}

/** The last lines a command printed, at most TAIL_LINES of them and TAIL_CHARS in all. */
export class OutputTail {
  private readonly lines: string[] = [];

  push(line: string): void {
    this.lines.push(line.trimEnd());
    if (this.lines.length > TAIL_LINES) this.lines.shift();
  }

  text(): string {
    const all = this.lines.join("\n");
    if (all.length <= TAIL_CHARS) return all;
    // Cut at a line start when one is near, so the message begins with a whole line.
    const cut = all.slice(-TAIL_CHARS);
    const newline = cut.indexOf("\n");
    return newline >= 0 && newline < 200 ? cut.slice(newline + 1) : `…${cut}`;
  }
}

const PROGRESS_WORD = /^\s*progress\s*[:=]?\s*(\d{1,3}(?:\.\d+)?)\s*%?(?:\s+(.*?))?\s*$/i;
/** A line that is only a percentage, `42%`. */
const BARE_PERCENT = /^\s*(\d{1,3}(?:\.\d+)?)\s*%\s*$/;
/**
 * tqdm's bar, `desc:  42%|████      | 42/100 [...]`: the percentage right before a "|", so that a
 * log line such as "GPU memory: 85% used" is not taken for progress.
 */
const TQDM_BAR = /^[^|]{0,120}?(\d{1,3}(?:\.\d+)?)%\|/;

/**
 * The progress convention of the command engine (README, "The command engine"): a line
 * `progress: 42` (or `progress=42`, `PROGRESS 42%`, any text after it being the step's name), a
 * line that is only a percentage (`42%`), or a tqdm bar. Other lines are output.
 */
export function parseProgressLine(line: string): { percent: number; message?: string } | undefined {
  const word = PROGRESS_WORD.exec(line);
  const match = word ?? BARE_PERCENT.exec(line) ?? TQDM_BAR.exec(line);
  if (!match) return undefined;
  const percent = Number(match[1]);
  if (!(percent >= 0 && percent <= 100)) return undefined;
  const message = word ? word[2] : undefined;
  return message ? { percent, message } : { percent };
}

interface ProgressReporter {
  report(percent: number, message?: string): void;
  done(): void;
}

/**
 * Whole percentages that never go back (a script with several bars restarts at 0 for each), held
 * at 99 until the command has exited and its output checked out.
 */
function progressReporter(ctx: EngineRunContext): ProgressReporter {
  let last = -1;
  let lastMessage = "running";
  const send = (percent: number, message: string): void => {
    if (percent === last && message === lastMessage) return;
    last = percent;
    lastMessage = message;
    ctx.onProgress(percent, message);
  };
  return {
    report: (percent, message) =>
      send(Math.max(last, Math.min(99, Math.floor(percent))), message ?? lastMessage),
    done: () => send(100, "done"),
  };
}

/** Exit 0 is not enough: the promise to clients is a video, so `{output}` must hold one. */
async function checkOutput(path: string, words: string, signal: AbortSignal): Promise<void> {
  const size = await stat(path).then(
    (s) => (s.isFile() ? s.size : 0),
    () => 0,
  );
  if (size === 0) {
    throw new EngineError("machine", `the command exited 0 but wrote nothing to {output}${words}`);
  }
  try {
    const info = await probeMedia(path, { signal });
    if (!info.video) throw new MediaError("MEDIA_NO_STREAMS", "it has no video stream");
  } catch (err) {
    if (signal.aborted) throw asAbort(err, signal);
    throw new EngineError(
      "machine",
      `the command exited 0 but {output} is not a video: ${errorMessage(err)}`,
    );
  }
}
