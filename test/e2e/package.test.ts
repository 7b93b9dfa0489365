import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { killAll, run, startCli } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SCRIPTS = "better-sqlite3,@ffmpeg-installer/linux-x64,@ffprobe-installer/linux-x64";

/**
 * Issue 10: a GPU machine gets the package without a clone. `npm pack`, then `npm install -g` of
 * the tarball into a temporary prefix (from npm's cache where it can), then the installed
 * `multi-heygem worker` and `multi-heygem gateway` run a task together.
 */
describe("the package, installed from its tarball", () => {
  let dir: string;
  let bin: string;

  beforeAll(async () => {
    dir = await tempDir();
    // --ignore-scripts: `npm test` built dist/ already, and a rebuild here would rewrite it under
    // the other test files' child processes.
    const packed = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT });
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = (await readdir(dir)).find((f) => f.endsWith(".tgz"));
    expect(tarball).toBeDefined();
    const prefix = join(dir, "prefix");
    const installed = await run(
      "npm",
      [
        "install",
        "--global",
        "--prefix",
        prefix,
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        `--allow-scripts=${SCRIPTS}`,
        join(dir, tarball ?? ""),
      ],
      { cwd: dir },
    );
    expect(installed.code, installed.stderr).toBe(0);
    bin = join(prefix, "bin", "multi-heygem");
  }, 600_000);

  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("answers --version with the package's version", async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string };
    const res = await run(bin, ["--version"]);
    expect(res.code).toBe(0);
    expect(res.stdout.trim()).toBe(version);
  });

  it("runs a worker and a gateway that return a real MP4", async () => {
    const worker = await startCli(
      [
        "worker",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--engine",
        "ffmpeg",
        "--data-dir",
        join(dir, "worker"),
      ],
      "worker agent listening",
      { program: bin, cwd: dir },
    );
    const machines = join(dir, "machines.json");
    const port = Number(new URL(worker.url).port);
    await writeFile(machines, JSON.stringify({ machines: [{ name: "gpu", host: "127.0.0.1", port }] }));
    const gateway = await startCli(
      [
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--config",
        machines,
        "--data-dir",
        join(dir, "gateway"),
      ],
      "gateway listening",
      { program: bin, cwd: dir },
    );
    await makeAudio(join(dir, "a.wav"), { seconds: 1.5 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1, width: 160, height: 120 });
    const form = await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } });
    const created = (await (await fetch(`${gateway.url}/tasks`, { method: "POST", body: form })).json()) as {
      task_id: string;
    };
    await until(async () => {
      const task = (await (await fetch(`${gateway.url}/tasks/${created.task_id}`)).json()) as {
        status: string;
      };
      if (task.status === "failed") throw new Error("the task failed");
      return task.status === "completed";
    }, 60_000);
    const mp4 = join(dir, "out.mp4");
    await writeFile(
      mp4,
      Buffer.from(await (await fetch(`${gateway.url}/tasks/${created.task_id}/result`)).arrayBuffer()),
    );
    const media = await probe(mp4);
    expect(media.video).toBeDefined();
    expect(Math.abs(media.durationSec - 1.5)).toBeLessThan(0.2);

    // The dashboard's built files came with the package (issue 11).
    const page = await fetch(`${gateway.url}/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(await page.text())?.[1];
    expect(script).toBeDefined();
    expect((await fetch(`${gateway.url}${script}`)).status).toBe(200);
  });

  it("knows every flag the example systemd units use", async () => {
    const units = join(ROOT, "examples", "systemd");
    for (const name of await readdir(units)) {
      const text = await readFile(join(units, name), "utf8");
      const exec = /^ExecStart=\S+ (\S+)(.*)$/m.exec(text);
      expect(exec, name).not.toBeNull();
      const [, command = "", rest = ""] = exec ?? [];
      const help = (await run(bin, [command, "--help"])).stdout;
      for (const flag of rest.match(/--[a-z-]+/g) ?? []) expect(help, `${name}: ${flag}`).toContain(flag);
    }
  });
});
