import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, openSync, rmSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

/**
 * Child processes and temp dirs for the benchmarks. Every benchmark runs inside a `Scope` that
 * owns what it started; `close()` kills and deletes all of it, and a process-wide exit hook does
 * the same for anything still alive when the run ends, fails or is interrupted (Ctrl-C).
 */

/** The project's own build: the same `multi-heygem` a user runs. */
export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let keepDirs = false;

/** `--keep`: leave the temp dirs (logs, data dirs) behind to look into a run; processes still end. */
export function keepTempDirs(): void {
  keepDirs = true;
}

function killEverythingNow(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  if (!keepDirs) for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
}

process.once("exit", killEverythingNow);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killEverythingNow();
    process.exit(130);
  });
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** The URL from the child's "listening" log line. */
  readonly url: string;
  /** Where its stdout and stderr go (pino JSON lines). */
  readonly logPath: string;
  readonly process: ChildProcess;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** The `msg` of the log line that says the process is ready; it must carry `url`. */
  readonly readyMessage: string;
  /**
   * For a process too quiet to log that line (`--log-level warn`): it is ready, at this URL, once
   * a GET of the URL gets any HTTP answer.
   */
  readonly readyUrl?: string;
  readonly timeoutMs?: number;
  /** Added to the child's environment (which never holds MULTI_HEYGEM_* from the shell). */
  readonly env?: NodeJS.ProcessEnv;
  /** Run it inside this network namespace (`ip netns exec`, which execs: the pid is Node's). */
  readonly netns?: string;
}

/** The environment without MULTI_HEYGEM_* settings, so a developer's shell cannot change a figure. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("MULTI_HEYGEM_")) env[key] = value;
  }
  return env;
}

export class Scope {
  private readonly children = new Set<ChildProcess>();
  private readonly dirs = new Set<string>();
  private readonly deferred: Array<() => Promise<unknown>> = [];
  private logDir: Promise<string> | undefined;
  private started = 0;

  async tempDir(prefix = "mh-bench-"): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.dirs.add(dir);
    liveDirs.add(dir);
    return dir;
  }

  /** `node dist/cli.js <args>`, its working directory a temp dir (no stray config/machines.json). */
  startCli(name: string, args: readonly string[], options: StartOptions): Promise<Child> {
    return this.startNode(name, CLI, args, options);
  }

  /** With `port`, readiness is an HTTP answer there rather than a log line (for quiet log levels). */
  startGateway(
    name: string,
    args: readonly string[],
    port?: number,
    env?: NodeJS.ProcessEnv,
  ): Promise<Child> {
    return this.startCli(name, ["gateway", "--host", "127.0.0.1", "--port", String(port ?? 0), ...args], {
      readyMessage: "gateway listening",
      ...(port === undefined ? {} : { readyUrl: `http://127.0.0.1:${port}` }),
      ...(env ? { env } : {}),
    });
  }

  /** `port` 0 (the default) lets the system pick; a worker restarted in place asks for its old one. */
  startWorker(
    name: string,
    args: readonly string[],
    options: { port?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<Child> {
    return this.startCli(
      name,
      ["worker", "--host", "127.0.0.1", "--port", String(options.port ?? 0), ...args],
      {
        readyMessage: "worker agent listening",
        ...(options.env ? { env: options.env } : {}),
      },
    );
  }

  /** Any Node script as a child process with the same flags as the CLI gets (none). */
  async startNode(
    name: string,
    script: string,
    args: readonly string[],
    options: StartOptions,
  ): Promise<Child> {
    // One promise, so children started at once share one log dir.
    this.logDir ??= this.tempDir("mh-bench-logs-");
    const cwd = await this.logDir;
    // Numbered: a name may be started again (a fresh worker per run) and must not read the old log.
    const logPath = join(cwd, `${String(++this.started).padStart(3, "0")}-${name}.log`);
    const fd = openSync(logPath, "a");
    const argv = [script, ...args];
    const [command, commandArgs] = options.netns
      ? ["ip", ["netns", "exec", options.netns, process.execPath, ...argv]]
      : [process.execPath, argv];
    const child = spawn(command, commandArgs, {
      cwd,
      env: { ...cleanEnv(), ...options.env },
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    this.children.add(child);
    liveChildren.add(child);
    child.once("exit", () => {
      this.children.delete(child);
      liveChildren.delete(child);
    });
    const gone = once(child, "exit").catch(() => undefined);
    const kill = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await gone;
      }
    };
    try {
      const url = await waitForReady(child, logPath, options);
      if (child.pid === undefined) throw new Error(`${name}: no pid`);
      return { name, pid: child.pid, url, logPath, process: child, kill };
    } catch (err) {
      await kill();
      throw err;
    }
  }

  /**
   * Runs `cleanup` when the scope closes, after its processes are gone (a database they used).
   * Something left behind by an interrupted run is the next run's to clean up.
   */
  defer(cleanup: () => Promise<unknown>): void {
    this.deferred.push(cleanup);
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.children].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = once(child, "exit");
        child.kill("SIGKILL");
        await gone;
      }),
    );
    for (const cleanup of this.deferred.splice(0).reverse()) {
      await cleanup().catch((err: unknown) => {
        console.error(`[bench] cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    for (const dir of this.dirs) {
      if (!keepDirs) await rm(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    }
    this.dirs.clear();
    this.logDir = undefined;
  }
}

async function waitForReady(child: ChildProcess, logPath: string, options: StartOptions): Promise<string> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    if (options.readyUrl !== undefined) {
      const answered = await fetch(options.readyUrl).then(
        async (res) => {
          await res.arrayBuffer();
          return true;
        },
        () => false,
      );
      if (answered) return options.readyUrl;
    }
    const text = await readFile(logPath, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const parsed = JSON.parse(line) as { msg?: unknown; url?: unknown };
        if (parsed.msg === options.readyMessage && typeof parsed.url === "string") return parsed.url;
      } catch {
        // a partly written line; the next read has all of it
      }
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${logPath}: exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail(text)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${logPath}: no "${options.readyMessage}" line in time:\n${tail(text)}`);
    }
    await sleep(25);
  }
}

function tail(text: string, lines = 20): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** A port that was free a moment ago on 127.0.0.1 (for a child that will not say which it got). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no free port");
  return address.port;
}

/**
 * `n` different free ports on 127.0.0.1, for children that must come back at the same address
 * after a restart; all held open until all are chosen, so no two are the same.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  try {
    for (const server of servers) {
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no free port");
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** The last lines of a child's log, to put in an error that names what went wrong. */
export async function logTail(child: Child, lines = 20): Promise<string> {
  return tail(await readFile(child.logPath, "utf8").catch(() => ""), lines);
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) {
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** Resident memory of a process, from /proc (Linux): now, and the kernel's high-water mark. */
/** Whether a process with this pid exists (one of another user's still counts): a leftover's owner. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function memoryOf(pid: number): Promise<{ rssBytes: number; hwmBytes: number } | undefined> {
  const text = await readFile(`/proc/${pid}/status`, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  return { rssBytes: kb("VmRSS") * 1024, hwmBytes: kb("VmHWM") * 1024 };
}

/** Samples a process's RSS every `everyMs` until stopped; the peak is what counts. */
export function sampleMemory(pid: number, everyMs = 50) {
  let peakRss = 0;
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const m = await memoryOf(pid);
      if (m) {
        samples++;
        peakRss = Math.max(peakRss, m.rssBytes);
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop(): Promise<{ peakRssBytes: number; hwmBytes: number; samples: number }> {
      stopped = true;
      await loop;
      const last = await memoryOf(pid);
      return { peakRssBytes: peakRss, hwmBytes: last?.hwmBytes ?? Number.NaN, samples };
    },
  };
}

/** Linux's USER_HZ: /proc counts CPU time in these ticks on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds a process has used (user + system, /proc/PID/stat), its children that it has
 * waited for included (a worker's ffmpeg runs), or undefined once it is gone.
 */
export async function cpuSecondsOf(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  // Fields after the command name, which is in parentheses and may itself hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime: fields 14–17 of proc(5), 12–15 here (the first two are gone).
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return ticks / TICKS_PER_SECOND;
}

/** How many file descriptors a process has open (entries of /proc/PID/fd), or undefined once it is gone. */
export async function openFds(pid: number): Promise<number | undefined> {
  return (await readdir(`/proc/${pid}/fd`).catch(() => undefined))?.length;
}
