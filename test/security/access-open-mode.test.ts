import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, startGatewayProcess } from "../helpers/processes.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/**
 * Issue 9: with no keys file the API stays open, so the seed's clients work unchanged, but machine
 * administration answers only to clients on the gateway's own machine.
 */
describe("open mode (no --api-keys)", () => {
  let dir: string;
  let gateway: Gateway;
  let audio: string;
  let video: string;

  beforeAll(async () => {
    dir = await tempDir();
    audio = join(dir, "a.wav");
    video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    gateway = await startTestGateway();
  });
  afterAll(async () => {
    await gateway.close();
    await killAll();
    await removeDir(gateway.dataDir);
    await removeDir(dir);
  });

  const draining = async () =>
    (
      (await (await fetch(`${gateway.url}/machines`)).json()) as {
        machines: { name: string; draining: boolean }[];
      }
    ).machines[0]?.draining;

  it("takes tasks without a key in both of the seed's spellings, and shows them", async () => {
    for (const [a, v] of [
      ["audio", "video"],
      ["audio_file", "video_file"],
    ] as const) {
      const res = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ [a]: { path: audio }, [v]: { path: video }, description: "seed" }),
      });
      expect(res.status, a).toBe(200);
      const task = (await res.json()) as { task_id: string; owner: string | null };
      expect(task.owner).toBeNull();
      expect((await fetch(`${gateway.url}/tasks/${task.task_id}`)).status).toBe(200);
    }
    const list = (await (await fetch(`${gateway.url}/tasks`)).json()) as { total: number };
    expect(list.total).toBe(2);
  });

  it("lets a loopback client drain and resume a machine, without a key", async () => {
    expect((await fetch(`${gateway.url}/machines/embedded/drain`, { method: "POST" })).status).toBe(200);
    expect(await draining()).toBe(true);
    expect((await fetch(`${gateway.url}/machines/embedded/resume`, { method: "POST" })).status).toBe(200);
    expect(await draining()).toBe(false);
  });

  it("refuses machine administration to a client on another machine (403), and nothing changes", async () => {
    // A second address cannot be bound in a test; inject sets the peer address the hook reads.
    for (const [method, url] of [
      ["POST", "/machines/embedded/drain"],
      ["POST", "/machines/embedded/resume"],
      ["GET", "/machines"],
    ] as const) {
      const res = await gateway.app.inject({ method, url, remoteAddress: "10.1.2.3" });
      expect(res.statusCode, url).toBe(403);
      expect(res.json()).toEqual({
        error: "ADMIN_LOOPBACK_ONLY",
        message:
          "without API keys, machine administration answers only on the gateway's own machine; " +
          "configure --api-keys and use an admin key",
      });
    }
    expect(await draining()).toBe(false);
    // A proxy header does not make a remote client local.
    const forwarded = await gateway.app.inject({
      method: "POST",
      url: "/machines/embedded/drain",
      remoteAddress: "10.1.2.3",
      headers: { "x-forwarded-for": "127.0.0.1" },
    });
    expect(forwarded.statusCode).toBe(403);
    // Tasks stay open to the network, as the seed's clients expect.
    const tasks = await gateway.app.inject({ method: "GET", url: "/tasks", remoteAddress: "10.1.2.3" });
    expect(tasks.statusCode).toBe(200);
    // IPv4 loopback as a dual-stack socket shows it counts as local.
    const mapped = await gateway.app.inject({
      method: "GET",
      url: "/machines",
      remoteAddress: "::ffff:127.0.0.1",
    });
    expect(mapped.statusCode).toBe(200);
  });

  it("refuses machine administration to a web page rebound to 127.0.0.1 (its Host names it)", async () => {
    const port = new URL(gateway.url).port;
    const post = (host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port, method: "POST", path: "/machines/embedded/drain", headers: { host } },
          (res) => {
            let body = "";
            res.on("data", (d: Buffer) => {
              body += d.toString();
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on("error", reject);
        req.end();
      });
    const rebound = await post(`evil.example:${port}`);
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body)).toMatchObject({ error: "ADMIN_LOOPBACK_ONLY" });
    expect(await draining()).toBe(false);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`]) {
      expect((await post(host)).status, host).toBe(200);
    }
    expect((await fetch(`${gateway.url}/machines/embedded/resume`, { method: "POST" })).status).toBe(200);
  });

  it("says plainly at start-up that the API is open", async () => {
    const started = await startGatewayProcess(["--data-dir", join(dir, "process-data")], { cwd: dir });
    const line = started.lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.msg.includes("the API is OPEN"));
    expect(line?.level).toBe(40);
    expect(line?.msg).toContain("--api-keys");
  });
});
