import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runFfmpeg } from "../../src/media/run-ffmpeg.js";
import { filesUnder, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/** Issue 9, "bounded work": a queue that cannot grow without end, and audio HeyGem would refuse. */
describe("bounded work", () => {
  let dir: string;
  let gateway: Gateway | undefined;

  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
  });
  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
    await removeDir(dir);
  });

  const post = async (route = "/tasks", audio = join(dir, "a.wav")) =>
    fetch(`${gateway?.url}${route}`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: join(dir, "v.mp4") } }),
    });

  /** A gateway whose only machine never answers, so every task stays pending. */
  async function stuckGateway(flags: Record<string, string>): Promise<Gateway> {
    const machines = join(dir, "machines.json");
    await writeFile(machines, JSON.stringify({ machines: [{ name: "gone", host: "127.0.0.1", port: 9 }] }));
    return startTestGateway({ config: machines, ...flags }, join(dir, "gateway"));
  }

  it("beyond --max-pending, POST /tasks and /tasks/sync answer 429 with Retry-After and store nothing", async () => {
    gateway = await stuckGateway({ maxPending: "2" });
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(200);
    const filesBefore = await filesUnder(join(gateway.dataDir, "blobs"));

    for (const route of ["/tasks", "/tasks/sync"]) {
      const res = await post(route);
      expect(res.status, route).toBe(429);
      const retryAfter = Number(res.headers.get("retry-after"));
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3600).toBe(true);
      expect(await res.json()).toMatchObject({ error: "QUEUE_FULL" });
    }
    const list = (await (await fetch(`${gateway.url}/tasks`)).json()) as { total: number };
    expect(list.total).toBe(2);
    expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual(filesBefore);
  });

  it("the pending count survives a restart: a full queue stays full", async () => {
    gateway = await stuckGateway({ maxPending: "1" });
    expect((await post()).status).toBe(200);
    await gateway.close();
    gateway = await stuckGateway({ maxPending: "1" });
    expect((await post()).status).toBe(429);
  });

  it("a queue that drains makes room again", async () => {
    gateway = await startTestGateway({ maxPending: "1" }, join(dir, "gateway"));
    const first = (await (await post()).json()) as { task_id: string };
    await until(async () => {
      const task = (await (await fetch(`${gateway?.url}/tasks/${first.task_id}`)).json()) as {
        status: string;
      };
      return task.status !== "pending";
    });
    expect((await post()).status).toBe(200);
  });

  it("refuses audio over --max-audio-seconds as 400 AUDIO_TOO_LONG naming the field", async () => {
    gateway = await startTestGateway({ maxAudioSeconds: "1" }, join(dir, "gateway"));
    await makeAudio(join(dir, "long.wav"), { seconds: 2 });
    const res = await post("/tasks", join(dir, "long.wav"));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "AUDIO_TOO_LONG", field: "audio" });
    expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual([]);
  });

  it("refuses the 3.9 MB silent 1-hour MP3 of the issue by default, and stores nothing", async () => {
    gateway = await startTestGateway({}, join(dir, "gateway"));
    const mp3 = join(dir, "silent-hour.mp3");
    // prettier-ignore
    await runFfmpeg([
      "-v",
      "error",
      "-f",
      "lavfi",
      "-i",
      "anullsrc=r=8000:cl=mono",
      "-t",
      "3600",
      "-c:a",
      "libmp3lame",
      "-b:a",
      "8k",
      mp3,
    ]);
    for (const route of ["/tasks", "/tasks/sync"]) {
      const res = await post(route, mp3);
      expect(res.status, route).toBe(400);
      const body = (await res.json()) as { error: string; field: string; message: string };
      expect(body).toMatchObject({ error: "AUDIO_TOO_LONG", field: "audio" });
      expect(body.message).toMatch(/3600 s long; the limit is 1800 s/);
    }
    expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual([]);
    const list = (await (await fetch(`${gateway.url}/tasks`)).json()) as { total: number };
    expect(list.total).toBe(0);
  });
});
