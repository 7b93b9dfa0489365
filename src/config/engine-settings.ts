import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, resolve } from "node:path";
import type { CommandEngineSettings } from "../engines/command-engine.js";
import {
  type CommandTemplate,
  CommandTemplateError,
  parseCommandTemplate,
  programOf,
  withProgram,
} from "../engines/command-template.js";
import { SIMULATE_DEFAULTS, type SimulateEngineSettings } from "../engines/simulate-engine.js";
import { ConfigError } from "../errors.js";

/**
 * The worker flags of the `command` and `simulate` engines, checked at start-up like every other
 * setting (house-style.md, "Config is parsed once"), so a bad template stops the worker before it
 * takes a job rather than failing every job it is given.
 */

/** Raw values as commander hands them over (strings from flags or env). */
export interface CommandFlags {
  command?: string;
  commandTimeout?: string;
  commandInputExitCodes?: string;
  commandCwd?: string;
}

export interface SimulateFlags {
  speedFactor?: string;
  timeScale?: string;
}

/**
 * Undefined when there is no `--command`, which only `--engine command` requires; a template given
 * to another engine is still checked, so a typo in a shared environment file shows at once.
 */
export function resolveCommandSettings(
  flags: CommandFlags,
  engine: string,
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): CommandEngineSettings | undefined {
  if (flags.command === undefined || flags.command.trim() === "") {
    if (engine === "command") {
      throw new ConfigError(
        "--command",
        "",
        "--engine command needs a command template, e.g. --command 'python infer.py --audio {audio} --video {video} --out {output}'",
      );
    }
    return undefined;
  }
  let template: CommandTemplate;
  try {
    template = parseCommandTemplate(flags.command);
  } catch (err) {
    if (err instanceof CommandTemplateError) throw new ConfigError("--command", "", err.message);
    throw err;
  }
  const runDir = flags.commandCwd ? existingDir(resolve(cwd, flags.commandCwd)) : undefined;
  // Jobs run in their own work dir, where a relative program path would no longer point at it.
  template = withProgram(template, findProgram(programOf(template), { baseDir: runDir ?? cwd, cwd, env }));
  return Object.freeze({
    template,
    timeoutMs: seconds("command-timeout", flags.commandTimeout),
    inputExitCodes: Object.freeze(exitCodes(flags.commandInputExitCodes)),
    cwd: runDir,
  });
}

export function resolveSimulateSettings(flags: SimulateFlags): SimulateEngineSettings {
  return Object.freeze({
    speedFactor: decimal("speed-factor", flags.speedFactor, SIMULATE_DEFAULTS.speedFactor),
    timeScale: decimal("time-scale", flags.timeScale, SIMULATE_DEFAULTS.timeScale),
  });
}

function decimal(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    throw new ConfigError(`--${flag}`, "", `expected a number ≥ 0, got "${value}"`);
  }
  return n;
}

/** Seconds as milliseconds; absent or 0 means no limit. */
function seconds(flag: string, value: string | undefined): number | undefined {
  const n = decimal(flag, value, 0);
  return n > 0 ? Math.round(n * 1000) : undefined;
}

function exitCodes(value: string | undefined): number[] {
  if (value === undefined || value.trim() === "") return [];
  return value.split(",").map((part) => {
    const n = Number(part.trim());
    if (part.trim() === "" || !Number.isInteger(n) || n < 1 || n > 255) {
      throw new ConfigError(
        "--command-input-exit-codes",
        "",
        `expected exit codes 1–255 separated by commas (e.g. 2,3), got "${value}"`,
      );
    }
    return n;
  });
}

function existingDir(dir: string): string {
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new ConfigError("--command-cwd", "", `${dir} is not a directory`);
  return dir;
}

/** The program as an absolute path, found the way the OS would, or a ConfigError naming it. */
function findProgram(
  program: string,
  where: { baseDir: string; cwd: string; env: NodeJS.ProcessEnv },
): string {
  // Windows resolves through PATHEXT and friends; leave that to spawn there.
  if (process.platform === "win32") return program;
  if (program.includes("/")) {
    const path = isAbsolute(program) ? program : resolve(where.baseDir, program);
    if (isExecutable(path)) return path;
    throw new ConfigError("--command", "", `the program ${path} is not an executable file`);
  }
  const dirs = (where.env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  for (const dir of dirs) {
    // A relative PATH entry counts from where the worker started, as it does for the worker itself.
    const path = resolve(where.cwd, dir, program);
    if (isExecutable(path)) return path;
  }
  throw new ConfigError("--command", "", `the program "${program}" is not on PATH; write its full path`);
}

function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
