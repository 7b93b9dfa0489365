import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError, Client, type Task } from "../../src/client/index.js";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { filesUnder, removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";

/** Issue 11: the typed client, against a real gateway with its embedded ffmpeg worker. */
describe("the typed client", () => {
  let dir: string;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let client: Client;
  const admin = testKey("boss", "admin");
  const shop = testKey("shop", "submit");

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    await writeKeysFile(join(dir, "keys.json"), [admin, shop]);
    gateway = await startTestGateway({ apiKeys: join(dir, "keys.json") }, join(dir, "gateway"));
    client = new Client({ url: gateway.url, apiKey: shop.key });
  });

  afterAll(async () => {
    await gateway.close();
    await removeDir(dir);
  });

  it("uploads from paths with progress, follows the task to the end and saves a real MP4", async () => {
    const sent: [number, number | undefined][] = [];
    const task = await client.createTask(
      { audio: join(dir, "a.wav"), video: join(dir, "v.mp4"), description: "from the client" },
      { onUpload: (bytes, total) => sent.push([bytes, total]) },
    );
    expect(task).toMatchObject({ status: "pending", description: "from the client", owner: "shop" });
    const inputs = (await stat(join(dir, "a.wav"))).size + (await stat(join(dir, "v.mp4"))).size;
    const [last] = sent.slice(-1);
    // Every byte of the body was counted, and the body is the files plus a little multipart framing.
    expect(last?.[0]).toBe(last?.[1]);
    expect(last?.[1]).toBeGreaterThan(inputs);
    expect(last?.[1]).toBeLessThan(inputs + 2000);
    expect(sent.map(([b]) => b)).toEqual([...sent.map(([b]) => b)].sort((a, b) => a - b));

    const seen: Task[] = [];
    const done = await client.waitFor(task.task_id, { onUpdate: (t) => seen.push(t) });
    expect(done.status).toBe("completed");
    expect(seen.map((t) => t.status)).toContain("processing");

    const out = join(dir, "out.mp4");
    const bytes = await client.saveResult(task.task_id, out);
    expect(bytes).toBe((await stat(out)).size);
    const info = await probe(out);
    expect(info.video).toBeDefined();
    expect(info.durationSec).toBeCloseTo(1, 0);
    expect((await filesUnder(dir)).filter((f) => f.endsWith(".part"))).toEqual([]);
  });

  it("uploads bytes and streams of unknown length too", async () => {
    const audio = new Uint8Array(await readFile(join(dir, "a.wav")));
    const video = Readable.toWeb(createReadStream(join(dir, "v.mp4"))) as ReadableStream<Uint8Array>;
    let total: number | undefined = 0;
    const task = await client.createTask({ audio, video }, { onUpload: (_b, t) => (total = t) });
    expect(total).toBeUndefined();
    expect((await client.waitFor(task.task_id)).status).toBe("completed");
    const page = await client.listTasks({ status: "completed", limit: 10 });
    expect(page.tasks.map((t) => t.task_id)).toContain(task.task_id);
    const events = await client.events(task.task_id);
    expect(events.map((e) => e.type)).toContain("completed");
  });

  it("uploads an avatar once and makes tasks that name it, with no video", async () => {
    const avatar = await client.createAvatar({ video: join(dir, "v.mp4"), name: "presenter" });
    expect(avatar).toMatchObject({ name: "presenter", owner: "shop" });
    expect((await client.listAvatars()).avatars.map((a) => a.avatar_id)).toContain(avatar.avatar_id);
    const task = await client.createTask({ audio: join(dir, "a.wav"), avatarId: avatar.avatar_id });
    expect((await client.waitFor(task.task_id)).status).toBe("completed");
    expect((await client.getTask(task.task_id)).avatar_id).toBe(avatar.avatar_id);
    await client.deleteAvatar(avatar.avatar_id);
    await expect(client.getAvatar(avatar.avatar_id)).rejects.toMatchObject({ status: 404 });
  });

  it("turns refusals into ApiError with the gateway's code, status and field", async () => {
    const missing = await client.getTask("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ApiError);
    expect(missing).toMatchObject({ status: 404, code: "NOT_FOUND" });

    const noKey = await new Client({ url: gateway.url }).listTasks().catch((e: unknown) => e);
    expect(noKey).toMatchObject({ status: 401, code: "UNAUTHORIZED" });

    const notMedia = await client
      .createTask({ audio: new Uint8Array([1, 2, 3]), video: join(dir, "v.mp4") })
      .catch((e: unknown) => e);
    expect(notMedia).toMatchObject({ status: 400, field: "audio" });

    const forbidden = await client.drain("embedded").catch((e: unknown) => e);
    expect(forbidden).toMatchObject({ status: 403, code: "FORBIDDEN" });

    const down = await new Client({ url: "http://127.0.0.1:9" }).listTasks().catch((e: unknown) => e);
    expect(down).toMatchObject({ status: 0, code: "UNREACHABLE" });
  });

  it("lists, drains and resumes machines with an admin key", async () => {
    const boss = new Client({ url: gateway.url, apiKey: admin.key });
    const [machine] = await boss.machines();
    expect(machine?.name).toBe("embedded");
    expect((await boss.drain("embedded")).draining).toBe(true);
    expect((await boss.resume("embedded")).draining).toBe(false);
    const res = await fetch(`${gateway.url}/machines`, { headers: bearer(admin) });
    expect(res.status).toBe(200);
  });

  it("follows every task the key may see, resuming after a dropped connection without a gap", async () => {
    // The first stream the client opens breaks after its first message, as a proxy restart would.
    let streams = 0;
    // Its own connection pool, closed at the end: undici may leave a connection it opened for a
    // request aborted mid-connect sitting in the pool, unused.
    const pool = new Agent();
    const viaPool = (input: Parameters<typeof fetch>[0], init?: RequestInit) =>
      fetch(input, { ...init, dispatcher: pool } as unknown as RequestInit);
    const cutting: typeof fetch = async (input, init) => {
      if (!String(input).endsWith("/tasks/stream") || streams++ > 0) return viaPool(input, init);
      const cut = new AbortController();
      const signals = init?.signal ? [init.signal, cut.signal] : [cut.signal];
      const res = await viaPool(input, { ...init, signal: AbortSignal.any(signals) });
      const reader = res.body?.getReader();
      const first = await reader?.read();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          if (first?.value) controller.enqueue(first.value);
        },
        pull(controller) {
          cut.abort();
          controller.error(new Error("connection reset"));
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const watcher = new Client({ url: gateway.url, apiKey: shop.key, fetch: cutting, reconnectMs: 10 });
    const abort = new AbortController();
    const seen: string[] = [];
    let ready: () => void = () => {};
    const opened = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const following = (async () => {
      for await (const m of watcher.follow({ signal: abort.signal })) {
        if (m.type === "ready") ready();
        if (m.type === "task") seen.push(`${m.task.task_id}:${m.event.type}`);
        if (m.type === "task" && m.task.status === "completed") abort.abort();
      }
    })();
    await opened;
    const task = await client.createTask({ audio: join(dir, "a.wav"), video: join(dir, "v.mp4") });
    await following;
    await pool.destroy();
    expect(streams).toBeGreaterThan(1);
    const log = await client.events(task.task_id);
    expect(seen).toEqual(log.map((e) => `${task.task_id}:${e.type}`));
  });
});
