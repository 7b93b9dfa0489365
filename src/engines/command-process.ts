import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { AbortError } from "../media/run-ffmpeg.js";

/**
 * Runs one command of the command engine in a process group of its own, so that a timeout or a
 * cancel reaches what it started too: inference scripts fork ffmpeg, data loaders and the like, and
 * a child left behind would hold a GPU and its memory after the job is over.
 */

export interface GroupProcessOptions {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly signal: AbortSignal;
  /** Kill the command once it has run this long; undefined: no limit. */
  readonly timeoutMs?: number | undefined;
  /** Between SIGTERM (a chance to clean up) and SIGKILL. */
  readonly killGraceMs: number;
  /** Each line the command prints, as it comes. */
  readonly onLine?: ((line: string, stream: "stdout" | "stderr") => void) | undefined;
}

export interface GroupProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the command was killed for running past `timeoutMs`. */
  readonly timedOut: boolean;
}

// Windows has no process groups to signal; there the command alone is killed.
const GROUPS = process.platform !== "win32";
/** A line with no end in sight (a progress bar that never prints a newline) is cut here. */
const MAX_LINE_CHARS = 8 * 1024;
/** After the command exits, how long its output may take to drain before the pipes are dropped. */
const DRAIN_MS = 2_000;

/**
 * Resolves when the command has exited and the rest of its group has been sent SIGKILL; rejects
 * with an AbortError when `signal` aborted it, or with the spawn error (ENOENT, EACCES) when it
 * never ran.
 */
export async function runInProcessGroup(
  argv: readonly string[],
  options: GroupProcessOptions,
): Promise<GroupProcessExit> {
  const { signal } = options;
  const [program, ...args] = argv;
  if (program === undefined) throw new Error("no program to run");
  if (signal.aborted) throw new AbortError("job aborted", { cause: signal.reason });

  const child = spawn(program, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    // setsid(): the child leads a new process group (and session), which `kill(-pid)` reaches whole.
    detached: GROUPS,
  });
  // Subscribed before anything can happen: "close" may follow "exit" within the same tick.
  const closed = once(child, "close").catch(() => undefined);
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code: number | null, sig: NodeJS.Signals | null) => resolve([code, sig]));
  });
  if (options.onLine) {
    const onLine = options.onLine;
    splitLines(child.stdout, (line) => onLine(line, "stdout"));
    splitLines(child.stderr, (line) => onLine(line, "stderr"));
  }

  let stopping: "timeout" | "abort" | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  const terminate = (why: "timeout" | "abort"): void => {
    if (stopping) return;
    stopping = why;
    signalGroup(child, "SIGTERM");
    graceTimer = setTimeout(() => signalGroup(child, "SIGKILL"), options.killGraceMs);
  };
  const onAbort = (): void => terminate("abort");
  signal.addEventListener("abort", onAbort, { once: true });
  const timeoutTimer =
    options.timeoutMs === undefined ? undefined : setTimeout(() => terminate("timeout"), options.timeoutMs);

  try {
    const [code, exitSignal] = await exited;
    // Whatever the command left behind in its group (a forked helper that ignored SIGTERM, a
    // background process) goes with it: nothing of a finished job may keep running.
    signalGroup(child, "SIGKILL");
    await Promise.race([closed, delay(DRAIN_MS)]);
    if (stopping === "abort") throw new AbortError("job aborted", { cause: signal.reason });
    return { code, signal: exitSignal, timedOut: stopping === "timeout" };
  } finally {
    signal.removeEventListener("abort", onAbort);
    clearTimeout(timeoutTimer);
    clearTimeout(graceTimer);
    // A process that escaped the group (its own setsid) may still hold the pipes open.
    child.stdout?.destroy();
    child.stderr?.destroy();
  }
}

function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    if (GROUPS) process.kill(-child.pid, sig);
    else child.kill(sig);
  } catch {
    // ESRCH: the group is already gone, which is what was wanted.
  }
}

/** Lines end at "\n" or "\r": tqdm, which Wav2Lip and LatentSync use, redraws its bar with "\r". */
function splitLines(stream: Readable | null, onLine: (line: string) => void): void {
  if (!stream) return;
  stream.setEncoding("utf8");
  let pending = "";
  stream.on("data", (chunk: string) => {
    pending += chunk;
    const parts = pending.split(/\r\n|\r|\n/);
    pending = parts.pop() ?? "";
    for (const line of parts) onLine(line);
    if (pending.length > MAX_LINE_CHARS) {
      onLine(pending);
      pending = "";
    }
  });
  stream.on("end", () => {
    if (pending) onLine(pending);
    pending = "";
  });
  // The pipes are destroyed on purpose after a drain timeout; nothing to report.
  stream.on("error", () => undefined);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
