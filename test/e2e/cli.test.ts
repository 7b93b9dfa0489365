import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
});
