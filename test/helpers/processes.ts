import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

export interface Started {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far (pino JSON). */
  lines: string[];
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

const running = new Set<ChildProcess>();

/**
 * Runs `multi-heygem <args>` from the build as a real child process and resolves once it logs
 * the line whose `msg` is `readyMessage`, with the URL that line carries.
 */
export async function startCli(
  args: string[],
  readyMessage: string,
  options: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    timeoutMs?: number;
    /** Another `multi-heygem` executable (an installed package's) instead of this build's. */
    program?: string;
  } = {},
): Promise<Started> {
  const [command, argv] = options.program ? [options.program, args] : [process.execPath, [CLI, ...args]];
  const child = spawn(command, argv, {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const lines: string[] = [];
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(
      () =>
        reject(
          new Error(`${args[0]} did not log "${readyMessage}" in time:\n${lines.join("\n")}\n${stderr}`),
        ),
      options.timeoutMs ?? 30_000,
    );
    child.stdout?.on("data", (d: Buffer) => {
      buffered += d.toString();
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        try {
          const parsed = JSON.parse(line) as { msg?: string; url?: string };
          if (parsed.msg === readyMessage && parsed.url) {
            clearTimeout(timer);
            resolve(parsed.url);
          }
        } catch {
          // not a JSON line
        }
        nl = buffered.indexOf("\n");
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(
        new Error(`${args[0]} exited with ${code} before it was ready:\n${lines.join("\n")}\n${stderr}`),
      );
    });
  });
  const gone = once(child, "exit");
  return {
    child,
    url,
    lines,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await gone;
      }
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const [code] = (await gone) as [number | null];
      return code;
    },
  };
}

export function startGatewayProcess(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return startCli(["gateway", "--host", "127.0.0.1", "--port", "0", ...args], "gateway listening", options);
}

export function startWorkerProcess(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return startCli(
    ["worker", "--host", "127.0.0.1", "--port", "0", ...args],
    "worker agent listening",
    options,
  );
}

/** For afterEach: no test leaves a process behind, whatever happened. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = once(child, "exit");
      child.kill("SIGKILL");
      await gone;
    }),
  );
}

/** Runs a command to completion; resolves with its exit code and output. */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // A command that hangs (a start that never ends) is killed, and answers with no exit code.
  const child = spawn(command, args, {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    timeout: options.timeoutMs ?? 300_000,
    killSignal: "SIGKILL",
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}
