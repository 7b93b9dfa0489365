import { request } from "node:http";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, run, startCli, startWorkerProcess } from "../helpers/processes.js";

/**
 * Issue 9, "Workers closed by default": a worker reachable from the network without a token
 * would run anyone's jobs and delete their files, so it does not start unless told to.
 */
describe("worker tokens", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  const worker = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [CLI, "worker", "--port", "0", "--data-dir", join(dir, "w"), ...args], {
      cwd: dir,
      env: { MULTI_HEYGEM_WORKER_TOKEN: "", ...env },
    });

  it.each([
    [[]],
    [["--host", "0.0.0.0"]],
    [["--host", "::"]],
    [["--host", "192.168.1.50"]],
    [["--host", "gpu-01.lan"]],
  ])("%j without a token exits 2 with one line saying how to set one", async (args) => {
    const res = await worker(args);
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split("\n");
    expect(lines, res.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^multi-heygem: configuration error: --token: a worker listening on \S+ can be reached/,
    );
    expect(lines[0]).toContain("--token <secret> or MULTI_HEYGEM_WORKER_TOKEN");
    expect(lines[0]).toContain("--insecure-no-token");
    expect(res.stdout).toBe("");
  });

  it("another mistake in the settings is reported before the missing token", async () => {
    const res = await worker(["--engine", "magic"]);
    expect(res.stderr).toContain('--engine: "magic" is not one of');
  });

  it("starts on 0.0.0.0 with --insecure-no-token, warning loudly, and on loopback without a token", async () => {
    const open = await startCli(
      ["worker", "--host", "0.0.0.0", "--port", "0", "--data-dir", join(dir, "w"), "--insecure-no-token"],
      "worker agent listening",
      { cwd: dir, env: { MULTI_HEYGEM_WORKER_TOKEN: "" } },
    );
    const warning = open.lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.msg.includes("--insecure-no-token"));
    expect(warning?.level).toBe(40);
    expect(warning?.msg).toContain("NO token");
    await open.kill();

    const local = await startWorkerProcess(["--data-dir", join(dir, "w2")], {
      env: { MULTI_HEYGEM_WORKER_TOKEN: "" },
    });
    expect(local.lines.some((l) => l.includes("--insecure-no-token"))).toBe(false);
    expect((await fetch(`${local.url}/v1/health`)).status).toBe(200);
  });

  it("starts on a network address with a token from the environment", async () => {
    const started = await startCli(
      ["worker", "--host", "0.0.0.0", "--port", "0", "--data-dir", join(dir, "w")],
      "worker agent listening",
      { cwd: dir, env: { MULTI_HEYGEM_WORKER_TOKEN: "s3cret" } },
    );
    expect(started.lines.some((l) => l.includes("--insecure-no-token"))).toBe(false);
  });

  it("answers a missing token and a wrong one with different 401s", async () => {
    const started = await startWorkerProcess(["--data-dir", join(dir, "w"), "--token", "s3cret"]);
    const health = (headers: Record<string, string>) => fetch(`${started.url}/v1/health`, { headers });

    const missing = await health({});
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer /);
    const missingBody = (await missing.json()) as { error: string; message: string };
    expect(missingBody.message).toContain("send Authorization: Bearer <token>");

    const wrong = await health({ authorization: "Bearer not-it" });
    expect(wrong.status).toBe(401);
    const wrongBody = (await wrong.json()) as { error: string; message: string };
    expect(wrongBody.message).toContain("the worker token does not match");
    expect(wrongBody.error).not.toBe(missingBody.error);

    expect((await health({ authorization: "Bearer s3cret" })).status).toBe(200);
    // Nothing that changes state gets past it either.
    const del = await fetch(`${started.url}/v1/blobs/${"a".repeat(64)}`, {
      method: "DELETE",
      headers: { authorization: "Bearer not-it" },
    });
    expect(del.status).toBe(401);
  });

  it("a loopback worker without a token answers only requests addressed to loopback (DNS rebinding)", async () => {
    const started = await startWorkerProcess(["--data-dir", join(dir, "w")], {
      env: { MULTI_HEYGEM_WORKER_TOKEN: "" },
    });
    const port = new URL(started.url).port;
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "/v1/health", headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    expect(await get(`evil.example:${port}`)).toBe(403);
    expect(await get(`127.0.0.1:${port}`)).toBe(200);
    expect(await get(`localhost:${port}`)).toBe(200);
  });
});
