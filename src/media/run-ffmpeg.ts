import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { ffmpegPath } from "./ffmpeg-binaries.js";

export interface RunFfmpegOptions {
  readonly signal?: AbortSignal;
  /**
   * Called with a whole percentage, 0–100, each time it grows. Needs `totalDurationSec`: ffmpeg
   * reports how far into the output it is, not how far it has to go.
   */
  readonly onProgress?: (percent: number) => void;
  /** Seconds of output this run will write. */
  readonly totalDurationSec?: number;
  /** An explicit binary; by default the one `ffmpegPath()` resolves. */
  readonly ffmpeg?: string;
}

/** ffmpeg exited with an error; `stderrTail` holds its last words, which usually name the cause. */
export class FfmpegError extends Error {
  readonly code = "FFMPEG_FAILED";

  constructor(
    readonly exitCode: number | null,
    readonly exitSignal: NodeJS.Signals | null,
    readonly stderrTail: readonly string[],
  ) {
    const how = exitCode !== null ? `exit code ${exitCode}` : `signal ${exitSignal ?? "unknown"}`;
    const tail = stderrTail.length > 0 ? `: ${stderrTail.join("\n")}` : "";
    super(`ffmpeg failed (${how})${tail}`);
    this.name = "FfmpegError";
  }
}

/** The run was cancelled through its AbortSignal; shaped like Node's own AbortError. */
export class AbortError extends Error {
  readonly code = "ABORT_ERR";

  constructor(message = "ffmpeg was aborted", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AbortError";
  }
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === "AbortError";
}

const STDERR_TAIL_LINES = 20;

/**
 * Runs ffmpeg with `args` (no shell, so paths need no quoting) and resolves when it exits 0.
 * `-nostats` keeps the carriage-return progress line out of stderr, so the kept tail holds the
 * warnings and errors; progress comes machine-readable from `-progress pipe:1` instead.
 */
export async function runFfmpeg(args: readonly string[], options: RunFfmpegOptions = {}): Promise<void> {
  const { signal, onProgress, totalDurationSec } = options;
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
  const binary = options.ffmpeg ?? (await ffmpegPath());
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });

  const wantsProgress = onProgress !== undefined && totalDurationSec !== undefined && totalDurationSec > 0;
  const fullArgs = [
    "-nostdin",
    "-hide_banner",
    "-nostats",
    "-y",
    ...(wantsProgress ? ["-progress", "pipe:1"] : []),
    ...args,
  ];
  const child = spawn(binary, fullArgs, { stdio: ["ignore", wantsProgress ? "pipe" : "ignore", "pipe"] });

  const tail: string[] = [];
  if (child.stderr) {
    createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
      if (line.trim() === "") return;
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
    });
  }

  if (wantsProgress && child.stdout) {
    const totalUs = totalDurationSec * 1_000_000;
    let reported = -1;
    const report = (percent: number): void => {
      const whole = Math.min(100, Math.max(0, Math.floor(percent)));
      if (whole > reported) {
        reported = whole;
        onProgress(whole);
      }
    };
    createInterface({ input: child.stdout }).on("line", (line) => {
      const eq = line.indexOf("=");
      if (eq < 0) return;
      const key = line.slice(0, eq);
      // Older builds only print out_time_ms, which despite its name is in microseconds too.
      if (key === "out_time_us" || key === "out_time_ms") {
        const us = Number(line.slice(eq + 1));
        if (Number.isFinite(us)) report((us / totalUs) * 100);
      } else if (key === "progress" && line.slice(eq + 1) === "end") {
        report(100);
      }
    });
  }

  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    // SIGKILL, not SIGTERM: ffmpeg traps SIGTERM to finish writing the file, which can take long.
    child.kill("SIGKILL");
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  try {
    // Waiting for "close" (not rejecting on abort straight away) means that when this settles the
    // process is gone and holds no file open, so callers may delete the work dir at once.
    const [code, exitSignal] = await new Promise<[number | null, NodeJS.Signals | null]>(
      (resolve, reject) => {
        child.once("error", reject);
        child.once("close", (c: number | null, s: NodeJS.Signals | null) => resolve([c, s]));
      },
    );
    if (aborted) throw new AbortError(undefined, { cause: signal?.reason });
    if (code !== 0) throw new FfmpegError(code, exitSignal, tail);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
