import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GATEWAY_OPTIONS } from "../../src/config/gateway-options.js";
import { helpText, type OptionTable } from "../../src/config/options.js";
import { WORKER_OPTIONS } from "../../src/config/worker-options.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, run, startWorkerProcess } from "../helpers/processes.js";

describe("multi-heygem CLI", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("--help lists both commands", async () => {
    const res = await run(process.execPath, [CLI, "--help"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("gateway");
    expect(res.stdout).toContain("worker");
  });

  it("a --config that does not exist is an error naming the file", async () => {
    const missing = join(dir, "nope.json");
    const res = await run(process.execPath, [CLI, "gateway", "--port", "0", "--config", missing]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(missing);
    expect(res.stderr).toContain("file not found");
  });

  it("an invalid machines file is an error naming the file and the field", async () => {
    const bad = join(dir, "bad.json");
    await writeFile(
      bad,
      JSON.stringify({
        machines: [
          { name: "a", host: "h", port: 1 },
          { name: "b", host: "h", port: "x" },
        ],
      }),
    );
    const res = await run(process.execPath, [CLI, "gateway", "--port", "0", "--config", bad]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(bad);
    expect(res.stderr).toContain("machines[1].port");
  });

  it("a port that is taken is an error that says so", async () => {
    const first = await startWorkerProcess(["--data-dir", join(dir, "w1")]);
    const port = new URL(first.url).port;
    const res = await run(process.execPath, [
      CLI,
      "worker",
      "--host",
      "127.0.0.1",
      "--port",
      port,
      "--data-dir",
      join(dir, "w2"),
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`${port} is already in use`);
    await first.kill();
  });

  it("an unknown engine is an error naming the choices", async () => {
    const res = await run(process.execPath, [CLI, "worker", "--port", "0", "--engine", "magic"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("ffmpeg");
  });

  const LEVELS = "fatal, error, warn, info, debug, trace, silent";
  it.each<[string[], string]>([
    [["gateway", "--log-level", "verbose"], `--log-level: "verbose" is not one of ${LEVELS}`],
    [["worker", "--log-level", "verbose"], `--log-level: "verbose" is not one of ${LEVELS}`],
    [["gateway", "--port", "abc"], '--port: "abc" is not an integer from 0 to 65535'],
    [["gateway", "--port", "70000"], '--port: "70000" is not an integer from 0 to 65535'],
    [["worker", "--port", "-1"], '--port: "-1" is not an integer from 0 to 65535'],
    [["gateway", "--health-interval", "5"], '--health-interval: "5" is not an integer ≥ 10'],
    [["gateway", "--task-timeout", "1.5"], '--task-timeout: "1.5" is not an integer ≥ 0'],
    [
      ["gateway", "--placement", "fastest"],
      '--placement: "fastest" is not one of earliest-finish, least-loaded, round-robin',
    ],
    [["worker", "--max-concurrent", "0"], '--max-concurrent: "0" is not an integer ≥ 1'],
    [["worker", "--speed-factor", "fast"], '--speed-factor: "fast" is not a number ≥ 0'],
    [["worker", "--engine", "magic"], '--engine: "magic" is not one of ffmpeg, heygem, command, simulate'],
  ])("%j is one line naming the flag, the value and what is allowed, and exit code 2", async (args, line) => {
    const res = await run(process.execPath, [CLI, ...args], { cwd: dir });
    expect(res.stderr).toBe(`multi-heygem: configuration error: ${line}\n`);
    expect(res.code).toBe(2);
  });

  it("a bad value from the environment also names the variable", async () => {
    const res = await run(process.execPath, [CLI, "gateway"], {
      cwd: dir,
      env: { MULTI_HEYGEM_LOG_LEVEL: "verbose" },
    });
    expect(res.stderr).toBe(
      `multi-heygem: configuration error: --log-level: "verbose" is not one of ${LEVELS} (set in MULTI_HEYGEM_LOG_LEVEL)\n`,
    );
    expect(res.code).toBe(2);
  });

  it("a bad value in worker.json names the file and the key", async () => {
    const file = join(dir, "worker.json");
    await writeFile(file, JSON.stringify({ port: 8000, log_level: "loud" }));
    const res = await run(process.execPath, [CLI, "worker", "--config", file], { cwd: dir });
    expect(res.stderr).toBe(
      `multi-heygem: configuration error: ${file}: log_level: "loud" is not one of ${LEVELS}\n`,
    );
    expect(res.code).toBe(2);
  });

  it.each<[string[], string]>([
    [["gateway", "--bogus"], "unknown option '--bogus'"],
    [["gateway", "--prot", "1"], "unknown option '--prot' (Did you mean --port?)"],
    [["worker", "--port"], "option '--port <port>' argument missing"],
    [["gateway", "extra"], "too many arguments for 'gateway'. Expected 0 arguments but got 1."],
    [["gatewya"], "unknown command 'gatewya' (Did you mean gateway?)"],
  ])("commander's own complaint about %j is one line too, and exit code 2", async (args, line) => {
    const res = await run(process.execPath, [CLI, ...args], { cwd: dir });
    expect(res.stderr).toBe(`multi-heygem: ${line}\n`);
    expect(res.code).toBe(2);
  });

  it.each<[string, OptionTable]>([
    ["gateway", GATEWAY_OPTIONS],
    ["worker", WORKER_OPTIONS],
  ])("%s --help shows every option with its default from the options table", async (command, table) => {
    const res = await run(process.execPath, [CLI, command, "--help"]);
    expect(res.code).toBe(0);
    const help = res.stdout.replace(/\s+/g, " ");
    for (const [key, spec] of Object.entries(table)) {
      const described = key === "engine" ? "the engine in front of which the agent runs:" : helpText(spec);
      expect(help).toContain(`${spec.flag}${spec.value ? ` ${spec.value}` : ""} ${described}`);
      expect(help).toContain(`(env: MULTI_HEYGEM_${spec.env})`);
    }
  });
});
