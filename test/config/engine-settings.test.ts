import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveWorkerConfig, type WorkerConfig, type WorkerFlags } from "../../src/config/worker-config.js";
import { programOf } from "../../src/engines/command-template.js";
import { createEngine, engineNames } from "../../src/engines/registry.js";
import { ConfigError } from "../../src/errors.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "engine-settings-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const resolveFlags = (flags: WorkerFlags) => resolveWorkerConfig(flags, engineNames(), dir);

function programIn(config: WorkerConfig): string {
  if (!config.command) throw new Error("no command settings");
  return programOf(config.command.template);
}

function configError(flags: WorkerFlags): ConfigError {
  try {
    resolveFlags(flags);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("worker flags of the command engine", () => {
  it("parses the template once, finds the program and builds the engine from it", () => {
    const config = resolveFlags({
      engine: "command",
      command: "node infer.js --audio {audio} --out {output}",
      commandTimeout: "90.5",
      commandInputExitCodes: "2, 3",
      maxConcurrent: "2",
    });
    expect(config.command).toMatchObject({ timeoutMs: 90_500, inputExitCodes: [2, 3], cwd: undefined });
    // Absolute: jobs run in their own work dir, where PATH lookups and relative paths would differ.
    expect(programIn(config)).toMatch(/^\/.*\/node$/);
    expect(Object.isFrozen(config.command)).toBe(true);

    const engine = createEngine("command", { maxConcurrent: config.maxConcurrent, config });
    expect(engine.name).toBe("command");
    expect(engine.capacity).toBe(2);
  });

  it("resolves a relative program against --command-cwd and checks it exists", async () => {
    await writeFile(join(dir, "run.sh"), "#!/bin/sh\n", { mode: 0o755 });
    const config = resolveFlags({ engine: "command", command: "./run.sh {output}", commandCwd: "." });
    expect(config.command?.cwd).toBe(dir);
    expect(programIn(config)).toBe(join(dir, "run.sh"));
    expect(config.command?.timeoutMs).toBeUndefined();
  });

  it.each<[WorkerFlags, string, RegExp]>([
    [{ engine: "command" }, "--command", /needs a command template/],
    [{ engine: "command", command: "node infer.js" }, "--command", /must contain \{output\}/],
    [{ engine: "command", command: "node infer.js {outptu}" }, "--command", /unknown placeholder \{outptu\}/],
    [{ engine: "command", command: "no-such-program-xyz {output}" }, "--command", /not on PATH/],
    [{ engine: "command", command: "./missing.sh {output}" }, "--command", /not an executable file/],
    [{ engine: "command", command: "node {output}", commandTimeout: "soon" }, "--command-timeout", /number/],
    [
      { engine: "command", command: "node {output}", commandInputExitCodes: "2,x" },
      "--command-input-exit-codes",
      /1–255/,
    ],
    [
      { engine: "command", command: "node {output}", commandInputExitCodes: "0" },
      "--command-input-exit-codes",
      /1–255/,
    ],
    [
      { engine: "command", command: "node {output}", commandCwd: "nowhere" },
      "--command-cwd",
      /not a directory/,
    ],
    // Checked whatever the engine, so a typo in a shared environment file shows at once.
    [{ engine: "ffmpeg", command: "node infer.js" }, "--command", /must contain \{output\}/],
  ])("refuses %j, naming %s", (flags, flag, problem) => {
    const err = configError(flags);
    expect(err.source).toBe(flag);
    expect(err.message).toMatch(problem);
  });

  it("leaves the command unset for other engines", () => {
    expect(resolveFlags({}).command).toBeUndefined();
    expect(() => createEngine("command", {})).toThrow(/--command/);
  });
});

describe("worker flags of the simulate engine", () => {
  it("defaults to real time and takes decimals", () => {
    expect(resolveFlags({}).simulate).toEqual({ speedFactor: 1, timeScale: 1 });
    const config = resolveFlags({
      engine: "simulate",
      speedFactor: "2.0",
      timeScale: "0.01",
      maxConcurrent: "4",
    });
    expect(config.simulate).toEqual({ speedFactor: 2, timeScale: 0.01 });
    const engine = createEngine("simulate", { maxConcurrent: config.maxConcurrent, config });
    expect(engine).toMatchObject({ name: "simulate", capacity: 4 });
  });

  it.each<[WorkerFlags, string]>([
    [{ speedFactor: "-1" }, "--speed-factor"],
    [{ timeScale: "fast" }, "--time-scale"],
  ])("refuses %j, naming %s", (flags, flag) => {
    expect(configError(flags).source).toBe(flag);
  });
});
