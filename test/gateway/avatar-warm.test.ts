import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ByteCounter, startByteCounter } from "../../bench/byte-counter.js";
import { createEngine } from "../../src/engines/registry.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { getTask } from "../helpers/fleet.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/**
 * Issue 12: an avatar's video crosses to each machine at most once, however many tasks use it,
 * and a warm sends it ahead. Each worker sits behind a proxy that reads the gateway's request
 * lines off the wire, so the count is of real PUT /v1/blobs requests.
 */
describe("an avatar on two machines", () => {
  const names = ["gpu-1", "gpu-2"] as const;
  let dir: string;
  let gateway: Gateway;
  const workers: WorkerHandle[] = [];
  const counters: ByteCounter[] = [];
  let video: string;
  let otherVideo: string;
  const audios: string[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    video = join(dir, "lin.mp4");
    await makeVideo(video, { seconds: 1 });
    otherVideo = join(dir, "mei.mp4");
    await makeVideo(otherVideo, { seconds: 1.2 });
    for (let i = 0; i < 10; i++) {
      const audio = join(dir, `line-${i}.wav`);
      // Different lengths: different content, so each task brings an audio the machines lack.
      await makeAudio(audio, { seconds: 0.5 + i / 20 });
      audios.push(audio);
    }
    for (const name of names) {
      const engine = createEngine("simulate", {
        maxConcurrent: 2,
        config: { simulate: { speedFactor: 1, timeScale: 0.05 } },
      });
      const worker = await startLocalWorker(join(dir, name), engine);
      workers.push(worker);
      counters.push(await startByteCounter(worker.port));
    }
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({
        machines: names.map((name, i) => ({
          name,
          host: "127.0.0.1",
          port: counters[i]?.port,
          max_concurrent: 2,
        })),
      }),
    );
    gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
    await until(() => names.every((n) => gateway.fleet.get(n)?.state === "up"));
  });
  afterAll(async () => {
    await gateway?.close();
    for (const c of counters) await c.close();
    for (const w of workers) await w.close();
    await removeDir(dir);
  });

  const blobPuts = () => counters.map((c) => c.requests.get("PUT /v1/blobs") ?? 0);
  const createAvatar = async (fields: Record<string, string> = {}, file = video) => {
    const res = await fetch(`${gateway.url}/avatars`, {
      method: "POST",
      body: await taskForm({ video: { path: file }, ...fields }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { avatar_id: string; machines: string[]; warming?: string[] };
  };
  /** Runs a task per audio with the avatar; answers how many ran on each machine. */
  const runTasks = async (avatarId: string, files: readonly string[]): Promise<number[]> => {
    const ids: string[] = [];
    for (const audio of files) {
      const res = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ audio: { path: audio }, avatar_id: avatarId }),
      });
      expect(res.status).toBe(200);
      ids.push(((await res.json()) as { task_id: string }).task_id);
    }
    const perMachine = names.map(() => 0);
    for (const id of ids) {
      const done = await until(async () => {
        const t = await getTask(gateway.url, id);
        if (t.status === "failed") throw new Error(`task ${id} failed: ${t.error_message}`);
        return t.status === "completed" && t;
      }, 60_000);
      expect(done.attempts).toBe(1);
      const i = names.indexOf(done.machine as (typeof names)[number]);
      perMachine[i] = (perMachine[i] ?? 0) + 1;
    }
    return perMachine;
  };

  it("sends the video once to each machine that runs its tasks, then only audio", async () => {
    const avatar = await createAvatar();
    expect(avatar.machines).toEqual([]);
    const before = blobPuts();
    const ran = await runTasks(avatar.avatar_id, audios.slice(0, 6));
    const puts = blobPuts().map((n, i) => n - (before[i] ?? 0));
    // Per machine: its tasks' audios, and the video once if any task ran there.
    expect(puts).toEqual(ran.map((n) => n + (n > 0 ? 1 : 0)));
    const view = (await (await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`)).json()) as {
      machines: string[];
    };
    expect(view.machines).toEqual(names.filter((_, i) => (ran[i] ?? 0) > 0));
  }, 120_000);

  it("warms a new avatar onto every up machine once; tasks then send only their audio", async () => {
    const before = blobPuts();
    const avatar = await createAvatar({ warm: "true", name: "warm" }, otherVideo);
    expect(avatar.warming).toEqual([...names]);
    await until(() => blobPuts().every((n, i) => n === (before[i] ?? 0) + 1), 30_000, { what: "warmed" });
    await until(async () => {
      const view = (await (await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`)).json()) as {
        machines: string[];
      };
      return view.machines.length === names.length;
    });

    const again = await fetch(`${gateway.url}/avatars/${avatar.avatar_id}/warm`, { method: "POST" });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ avatar_id: avatar.avatar_id, sending: [], holding: [...names] });

    const warmed = blobPuts();
    const ran = await runTasks(avatar.avatar_id, audios.slice(6));
    expect(blobPuts().map((n, i) => n - (warmed[i] ?? 0))).toEqual(ran);
  }, 120_000);

  it("answers 404 for the warm of an avatar that does not exist", async () => {
    const res = await fetch(`${gateway.url}/avatars/nope/warm`, { method: "POST" });
    expect(res.status).toBe(404);
  });
});
