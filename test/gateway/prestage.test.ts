import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { type CuttableProxy, startCuttableProxy } from "../helpers/cuttable-proxy.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeNoisyVideo } from "../helpers/media.js";
import { filePart } from "../helpers/raw-http.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/** The template video goes to the machine while the client is still uploading it, once. */
describe("forwarding uploads ahead", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let proxy: CuttableProxy;
  let gateway: Gateway;
  let video: string;
  let audio: string;

  let fixtures: string;
  /** What the gateway logged, one JSON line each. */
  let logs: string[];

  beforeAll(async () => {
    fixtures = await tempDir();
    video = join(fixtures, "v.mp4");
    audio = join(fixtures, "a.wav");
    // A few megabytes: more than the first megabyte the gateway looks at before it forwards.
    await makeNoisyVideo(video, { seconds: 2 });
    await makeAudio(audio, { seconds: 1 });
  });

  afterAll(async () => {
    await removeDir(fixtures);
  });

  beforeEach(async () => {
    dir = await tempDir();
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    proxy = await startCuttableProxy(worker.port);
    const machines = join(dir, "machines.json");
    await writeFile(
      machines,
      JSON.stringify({ machines: [{ name: "gpu", host: "127.0.0.1", port: proxy.port }] }),
    );
    logs = [];
    const logger = pino({ level: "info" }, { write: (line: string) => logs.push(line) });
    gateway = await startTestGateway({ config: machines }, join(dir, "gateway"), { logger });
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterEach(async () => {
    await gateway.close();
    await proxy.close();
    await worker.close();
    await removeDir(dir);
  });

  it("the video crosses to the machine once, and the task runs there", async () => {
    const size = (await stat(video)).size;
    const audioSize = (await stat(audio)).size;
    const before = proxy.bytesIn;
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    const { task_id } = (await res.json()) as { task_id: string };
    const job = await until(() => engine.running[0]);
    engine.release(job);
    await until(async () => (await gateway.store.getTask(task_id))?.status === "completed");
    const sent = proxy.bytesIn - before;
    expect(sent).toBeGreaterThan(size + audioSize);
    // Both files once, plus requests and health probes; a second copy of the video would not fit.
    expect(sent).toBeLessThan(size + audioSize + Math.min(size / 2, 64 * 1024));
  });

  it("forwards while the client is still sending: the machine has part of the video before the upload ends", async () => {
    const size = (await stat(video)).size;
    const audioSize = (await stat(audio)).size;
    const before = proxy.bytesIn;
    const encoded = new Response(await taskForm({ audio: { path: audio }, video: { path: video } }));
    const type = encoded.headers.get("content-type") ?? "";
    const source = encoded.body?.getReader();
    if (!source) throw new Error("no body");
    let sent = 0;
    let held = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        // Past most of the video (the audio comes first), hold the rest back until the machine has
        // seen half the video: without forwarding it would see nothing before the upload ends.
        if (!held && sent > audioSize + size * 0.8) {
          held = true;
          await until(() => proxy.bytesIn - before > size / 2, 10_000, { what: "bytes at the machine" });
        }
        const { done, value } = await source.read();
        if (done) controller.close();
        else {
          sent += value.length;
          controller.enqueue(value);
        }
      },
    });
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body,
      headers: { "content-type": type },
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(held).toBe(true);
  });

  it("a template the machine already holds is not sent again, neither ahead nor by the dispatcher", async () => {
    const size = (await stat(video)).size;
    const audioSize = (await stat(audio)).size;
    const run = async () => {
      const res = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ audio: { path: audio }, video: { path: video } }),
      });
      const { task_id } = (await res.json()) as { task_id: string };
      engine.release(await until(() => engine.running[0]));
      await until(async () => (await gateway.store.getTask(task_id))?.status === "completed");
    };
    await run();
    const before = proxy.bytesIn;
    await run();
    await run();
    // Two more tasks: their job requests and probes, not another copy of the video.
    expect(proxy.bytesIn - before).toBeLessThan(size / 2);
    expect(audioSize).toBeGreaterThan(0);
  });

  it("a second upload of a template that reached the machine for a task not yet created is not sent again", async () => {
    const size = (await stat(video)).size;
    const audioSize = (await stat(audio)).size;
    const sha = createHash("sha256")
      .update(await readFile(video))
      .digest("hex");
    const cache = new BlobStore(join(dir, "worker", "blobs"));
    const before = proxy.bytesIn;
    // The first client sends both files whole, then holds its closing "--\r\n" back until the
    // forwarded copy is in the machine's cache: its task is not created before the second arrives.
    const first = await heldTaskUpload(gateway.url, audio, video, 4);
    await until(async () => (await cache.has(sha)) !== undefined, 10_000, { what: "the copy" });
    const second = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(second.status).toBe(200);
    const secondId = ((await second.json()) as { task_id: string }).task_id;
    first.resume();
    const firstAnswer = await first.answer;
    expect(firstAnswer.status).toBe(200);
    const ids = [((await firstAnswer.json()) as { task_id: string }).task_id, secondId];
    for (let done = 0; done < ids.length; done++) engine.release(await until(() => engine.running[0]));
    for (const id of ids) await until(async () => (await gateway.store.getTask(id))?.status === "completed");
    // The video once (forwarded for the first task, found there for both), and the audio once:
    // the tasks share it. A second copy of the video would not fit.
    const sent = proxy.bytesIn - before;
    expect(sent).toBeGreaterThan(size + audioSize);
    expect(sent).toBeLessThan(size + audioSize + Math.min(size / 2, 64 * 1024));
  });

  it("a second upload of a template on its way to the machine waits for that copy instead of sending its own", async () => {
    const size = (await stat(video)).size;
    const audioSize = (await stat(audio)).size;
    const before = proxy.bytesIn;
    // The first client sends its audio and half its video, then holds the rest back: the copy
    // ahead is half-way to the machine while the second upload arrives and ends.
    const { answer: first, resume } = await heldTaskUpload(gateway.url, audio, video, size / 2);
    // All the video sent so far is at the machine (bar what the form parser holds back).
    await until(() => proxy.bytesIn - before > size / 2 - 64 * 1024, 10_000, { what: "half the copy ahead" });
    const held = proxy.bytesIn;
    const second = fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    // Until the second upload has joined the copy under way (or, were it not to, until its task
    // went to the machine and the template began to cross again), the first stays half-sent.
    await until(
      () =>
        logs.some((l) => l.includes("this task waits for that copy")) || proxy.bytesIn - held > 1024 * 1024,
      10_000,
      { what: "the second upload to join the copy ahead or send its own" },
    );
    resume();
    const answers = await Promise.all([first, second]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    const ids = await Promise.all(
      answers.map(async (r) => ((await r.json()) as { task_id: string }).task_id),
    );
    for (let done = 0; done < ids.length; done++) engine.release(await until(() => engine.running[0]));
    for (const id of ids) await until(async () => (await gateway.store.getTask(id))?.status === "completed");
    const sent = proxy.bytesIn - before;
    expect(sent).toBeGreaterThan(size + audioSize);
    expect(sent).toBeLessThan(size + audioSize + Math.min(size / 2, 64 * 1024));
  });

  it("a second upload does not wait for a first client that stopped sending: it goes on once it could have sent the file itself", async () => {
    const size = (await stat(video)).size;
    const before = proxy.bytesIn;
    const { answer: first, resume } = await heldTaskUpload(gateway.url, audio, video, size / 2);
    await until(() => proxy.bytesIn - before > size / 2 - 64 * 1024, 10_000, { what: "half the copy ahead" });
    // The first client sends nothing more until the second task has run to its end.
    const second = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(second.status).toBe(200);
    const { task_id } = (await second.json()) as { task_id: string };
    engine.release(await until(() => engine.running[0]));
    await until(async () => (await gateway.store.getTask(task_id))?.status === "completed");
    expect(logs.some((l) => l.includes("the copy on its way is slow"))).toBe(true);
    resume();
    const answer = await first;
    expect(answer.status).toBe(200);
    const other = ((await answer.json()) as { task_id: string }).task_id;
    engine.release(await until(() => engine.running[0]));
    await until(async () => (await gateway.store.getTask(other))?.status === "completed");
  });

  it("a refused task takes its forwarded video back out of the machine's cache", async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ video: { path: video } }),
    });
    expect(res.status).toBe(400);
    const task = await gateway.store.listTasks({ limit: 1, offset: 0 });
    expect(task.total).toBe(0);
    const cache = new BlobStore(join(dir, "worker", "blobs"));
    const { createHash } = await import("node:crypto");
    const { readFile } = await import("node:fs/promises");
    const sha = createHash("sha256")
      .update(await readFile(video))
      .digest("hex");
    expect(await cache.has(sha)).toBeUndefined();
  });
});

/**
 * POSTs the audio and the video as one form whose last `held` bytes wait until `resume()`: a first
 * client still uploading while the test sends a second.
 */
async function heldTaskUpload(
  url: string,
  audio: string,
  video: string,
  held: number,
): Promise<{ answer: Promise<Response>; resume: () => void }> {
  const boundary = "mh-held-boundary";
  const form = Buffer.concat([
    filePart(boundary, "audio", "a.wav", await readFile(audio)),
    filePart(boundary, "video", "v.mp4", await readFile(video)),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  const cut = form.length - held;
  let resume: () => void = () => undefined;
  const resumed = new Promise<void>((resolve) => {
    resume = resolve;
  });
  let step = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (step === 0) controller.enqueue(form.subarray(0, cut));
      else if (step === 1) {
        await resumed;
        controller.enqueue(form.subarray(cut));
      } else controller.close();
      step++;
    },
  });
  const answer = fetch(`${url}/tasks`, {
    method: "POST",
    body,
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
    duplex: "half",
  } as RequestInit);
  return { answer, resume };
}
