import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
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
  /** How many times each machine was sent this content. */
  const putsOf = (sha256: string) => counters.map((c) => c.paths.get(`PUT /v1/blobs/${sha256}`) ?? 0);
  const sha256Of = async (file: string) =>
    createHash("sha256")
      .update(await readFile(file))
      .digest("hex");
  const createAvatar = async (fields: Record<string, string> = {}, file = video) => {
    const res = await fetch(`${gateway.url}/avatars`, {
      method: "POST",
      body: await taskForm({ video: { path: file }, ...fields }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { avatar_id: string; machines: string[]; warming?: string[] };
  };
  /** Runs a task per audio with the avatar; answers the machine (its index) each one ran on. */
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
    const ranOn: number[] = [];
    for (const id of ids) {
      const done = await until(async () => {
        const t = await getTask(gateway.url, id);
        if (t.status === "failed") throw new Error(`task ${id} failed: ${t.error_message}`);
        return t.status === "completed" && t;
      }, 60_000);
      expect(done.attempts).toBe(1);
      ranOn.push(names.indexOf(done.machine as (typeof names)[number]));
    }
    return ranOn;
  };
  /**
   * Each task's audio went to the machine that ran it, and no content went twice to a machine.
   * An audio may have gone to another machine as well: a task waiting for a busy machine has its
   * audio sent there ahead (input-prefetch.ts), and may start elsewhere after all. Answers how
   * many audio PUTs each machine had.
   */
  const expectAudiosWhereRun = async (files: readonly string[], ranOn: readonly number[]) => {
    const audioPuts = names.map(() => 0);
    for (const [i, file] of files.entries()) {
      const puts = putsOf(await sha256Of(file));
      expect(puts.every((n) => n <= 1)).toBe(true);
      expect(puts[ranOn[i] ?? -1]).toBe(1);
      puts.forEach((n, m) => {
        audioPuts[m] = (audioPuts[m] ?? 0) + n;
      });
    }
    return audioPuts;
  };

  it("sends the video once to each machine that runs its tasks, then only audio", async () => {
    const avatar = await createAvatar();
    expect(avatar.machines).toEqual([]);
    const before = blobPuts();
    const files = audios.slice(0, 6);
    const ranOn = await runTasks(avatar.avatar_id, files);
    const audioPuts = await expectAudiosWhereRun(files, ranOn);
    // The video once to each machine that ran one of its tasks, and never twice to one.
    const videoPuts = putsOf(await sha256Of(video));
    for (const m of ranOn) expect(videoPuts[m]).toBe(1);
    expect(videoPuts.every((n) => n <= 1)).toBe(true);
    // Nothing else was sent.
    expect(blobPuts().map((n, m) => n - (before[m] ?? 0))).toEqual(
      videoPuts.map((n, m) => n + (audioPuts[m] ?? 0)),
    );
    const view = (await (await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`)).json()) as {
      machines: string[];
    };
    expect(view.machines).toEqual(names.filter((_, m) => videoPuts[m] === 1));
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
    const videoSha = await sha256Of(otherVideo);
    expect(putsOf(videoSha)).toEqual([1, 1]);

    const again = await fetch(`${gateway.url}/avatars/${avatar.avatar_id}/warm`, { method: "POST" });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ avatar_id: avatar.avatar_id, sending: [], holding: [...names] });

    const warmed = blobPuts();
    const files = audios.slice(6);
    const ranOn = await runTasks(avatar.avatar_id, files);
    const audioPuts = await expectAudiosWhereRun(files, ranOn);
    expect(putsOf(videoSha)).toEqual([1, 1]);
    expect(blobPuts().map((n, m) => n - (warmed[m] ?? 0))).toEqual(audioPuts);
  }, 120_000);

  it("answers 404 for the warm of an avatar that does not exist", async () => {
    const res = await fetch(`${gateway.url}/avatars/nope/warm`, { method: "POST" });
    expect(res.status).toBe(404);
  });
});
