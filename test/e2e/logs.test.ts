import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, startGatewayProcess } from "../helpers/processes.js";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Issue 10, "Logs an operator can read". */
describe("the gateway's log", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("json: ISO times, and a start-up line naming the machines file, the machines, the data dir and the embedded worker", async () => {
    const data = join(dir, "json");
    const gateway = await startGatewayProcess(["--log-format", "json", "--data-dir", data], { cwd: dir });
    const lines = gateway.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.every((l) => typeof l.time === "string" && ISO.test(l.time))).toBe(true);
    expect(lines.find((l) => l.msg === "gateway listening")).toMatchObject({
      data_dir: data,
      machines_file: null,
      machines: ["embedded"],
      embedded_worker: true,
    });
  });

  it("pretty: one readable line per event, with the same ISO times", async () => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-format",
        "pretty",
        "--data-dir",
        join(dir, "pretty"),
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("gateway listening")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    child.kill("SIGKILL");
    const listening = out.split("\n").find((l) => l.includes("gateway listening")) ?? "";
    expect(listening).toMatch(/^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO: gateway listening/);
    expect(out).not.toContain('{"level"');
  });
});
