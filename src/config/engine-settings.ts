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
import type { SimulateEngineSettings } from "../engines/simulate-engine.js";
import { ConfigError } from "../errors.js";
import type { Settings } from "./options.js";
import type { COMMAND_OPTIONS, SIMULATE_OPTIONS } from "./worker-options.js";

/**
 * The worker flags of the `command` and `simulate` engines, checked at start-up like every other
 * setting (house-style.md, "Config is parsed once"), so a bad template stops the worker before it
 * takes a job rather than failing every job it is given.
 */

/**
 * Undefined when there is no `--command`, which only `--engine command` requires; a template given
 * to another engine is still checked, so a typo in a shared environment file shows at once.
 * `options.commandCwd` is already absolute (read by `readSettings`).
 */
export function resolveCommandSettings(
  options: Settings<typeof COMMAND_OPTIONS>,
  engine: string,
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): CommandEngineSettings | undefined {
  if (options.command === undefined) {
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
    template = parseCommandTemplate(options.command);
  } catch (err) {
    if (err instanceof CommandTemplateError) throw new ConfigError("--command", "", err.message);
    throw err;
  }
  const runDir = options.commandCwd === undefined ? undefined : existingDir(options.commandCwd);
  // Jobs run in their own work dir, where a relative program path would no longer point at it.
  template = withProgram(template, findProgram(programOf(template), { baseDir: runDir ?? cwd, cwd, env }));
  const timeout = options.commandTimeout ?? 0;
  return Object.freeze({
    template,
    // Seconds on the command line; 0 means no limit.
    timeoutMs: timeout > 0 ? Math.round(timeout * 1000) : undefined,
    inputExitCodes: Object.freeze([...(options.commandInputExitCodes ?? [])]),
    cwd: runDir,
  });
}

export function resolveSimulateSettings(options: Settings<typeof SIMULATE_OPTIONS>): SimulateEngineSettings {
  return Object.freeze({ speedFactor: options.speedFactor, timeScale: options.timeScale });
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
