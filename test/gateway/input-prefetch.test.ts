import { Readable } from "node:stream";
import { setImmediate } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { BlobPush } from "../../src/gateway/blob-push.js";
import { InputPrefetch } from "../../src/gateway/input-prefetch.js";
import { Machine } from "../../src/gateway/machine.js";
import { createLogger } from "../../src/logger.js";
import { WorkerClient } from "../../src/protocol/worker-client.js";
import type { TaskRow } from "../../src/store/schema.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { healthyWorker, type ScriptedAnswer, startScriptedServer } from "../helpers/scripted-server.js";
import { until } from "../helpers/until.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/**
 * A prefetch over a real HTTP worker stand-in (scripted answers) with a real blob store: what it
 * sends, and when it holds back.
 */
async function setUp(answer: (method: string, path: string) => ScriptedAnswer, capacity = 1) {
  const dir = await tempDir();
  cleanups.push(() => removeDir(dir));
  const blobs = new BlobStore(dir);
  await blobs.init();
  const blob = async (bytes: number, fill: number) => {
    const staged = await blobs.stage(Readable.from([Buffer.alloc(bytes, fill)]));
    await staged.commit();
    sizes.set(staged.sha256, staged.bytes);
    return { sha256: staged.sha256, bytes: staged.bytes };
  };
  // Big enough to count as a use of the link (BlobPush), as a real template is.
  const templates = [await blob(1_000_000, 1), await blob(1_000_000, 2)];
  const audios = [await blob(4096, 3), await blob(4096, 4)];
  const worker = await startScriptedServer(answer);
  cleanups.push(() => worker.close());
  const machine = new Machine(
    {
      name: "gpu",
      host: "127.0.0.1",
      port: Number(new URL(worker.url).port),
      max_concurrent: capacity,
      enabled: true,
    },
    () => new WorkerClient({ baseUrl: worker.url, requestTimeoutMs: 5000 }),
  );
  machine.probeSucceeded(healthyWorker({ max_concurrent: capacity }), 0);
  machine.setHealth("up", undefined);
  const clock = new FakeClock();
  let idle = 0;
  const push = new BlobPush({ clock, blobs, askTimeoutMs: 5000, onIdle: () => idle++ });
  cleanups.push(() => push.close());
  const prefetch = new InputPrefetch({
    clock,
    push,
    logger: createLogger({ level: "silent", format: "json" }),
  });
  // The audio the template tests' tasks bring: the machine holds it, so only templates travel.
  const heldAudio = await blob(4096, 5);
  machine.knowBlob(heldAudio.sha256);
  const task = (
    id: string,
    template: { sha256: string; bytes: number },
    audio: { sha256: string; bytes: number } = heldAudio,
  ) =>
    ({
      id,
      video_sha256: template.sha256,
      video_bytes: template.bytes,
      speech: null,
      audio_sha256: audio.sha256,
      audio_bytes: audio.bytes,
    }) as TaskRow;
  return { worker, machine, clock, push, prefetch, templates, audios, task, idles: () => idle };
}

const sends = (requests: string[]) => requests.filter((r) => r.startsWith("PUT /v1/blobs/"));

/** A worker that holds nothing (HEAD 404) and stores what it is sent, answering as the agent does. */
const storing = (method: string, path: string): ScriptedAnswer => {
  if (method === "HEAD") return { status: 404 };
  const sha256 = path.split("/").pop() ?? "";
  return { status: 201, body: { sha256, bytes: sizes.get(sha256) } };
};
/** The sizes of the blobs the tests make, by hash, for `storing`'s answers. */
const sizes = new Map<string, number>();

/**
 * A task whose template the machine holds and whose audio it lacks, considered while a job's start
 * on that machine waits for its answer (`answer` gives it).
 */
async function waitingBehindAStart() {
  const s = await setUp(storing);
  const [template] = s.templates as [{ sha256: string; bytes: number }];
  const [audio] = s.audios as [{ sha256: string; bytes: number }];
  s.machine.knowBlob(template.sha256);
  let answer: () => void = () => undefined;
  const start = s.machine.starting(() => new Promise<void>((resolve) => (answer = resolve)));
  s.prefetch.consider([{ task: s.task("t1", template, audio), machine: s.machine }]);
  return { s, audio, answer: () => answer(), start };
}

describe("sending a waiting task's inputs ahead", () => {
  it("sends it to the busy machine once, and the machine is then known to hold it", async () => {
    let stored: { sha256: string; bytes: number } | undefined;
    const s = await setUp((method) => (method === "HEAD" ? { status: 404 } : { status: 201, body: stored }));
    const [first] = s.templates as [{ sha256: string; bytes: number }];
    stored = first;
    const waiting = [{ task: s.task("t1", first), machine: s.machine }];
    s.prefetch.consider(waiting);
    await until(() => s.machine.hasBlob(first.sha256) && s.push.idle);
    expect(s.worker.requests).toEqual([`HEAD /v1/blobs/${first.sha256}`, `PUT /v1/blobs/${first.sha256}`]);
    // Known there now: the next pass sends nothing.
    s.prefetch.consider(waiting);
    expect(s.push.idle).toBe(true);
    expect(s.worker.requests).toHaveLength(2);
  });

  it("does not try a failed send again until 30 s later", async () => {
    const s = await setUp((method) =>
      method === "HEAD"
        ? { status: 404 }
        : { status: 507, body: { error: { code: "DISK_FULL", message: "no room" } } },
    );
    const [first] = s.templates as [{ sha256: string; bytes: number }];
    const waiting = [{ task: s.task("t1", first), machine: s.machine }];
    s.prefetch.consider(waiting);
    // Once the send is over (the failure is then on record: its handler runs within the same tick).
    await until(() => sends(s.worker.requests).length === 1 && !s.machine.uploadUnderWay(first.sha256));
    s.prefetch.consider(waiting);
    s.clock.advance(29_000);
    s.prefetch.consider(waiting);
    expect(s.push.idle).toBe(true);
    expect(sends(s.worker.requests)).toHaveLength(1);
    s.clock.advance(1_001);
    s.prefetch.consider(waiting);
    await until(() => sends(s.worker.requests).length === 2);
  });

  it("holds back while a task's big upload uses the link, and is woken when it ends", async () => {
    const s = await setUp((method) => (method === "HEAD" ? { status: 200 } : { status: 500 }));
    const [first] = s.templates as [{ sha256: string; bytes: number }];
    let release: () => void = () => undefined;
    const upload = s.push.forTask(5_000_000, () => new Promise<void>((resolve) => (release = resolve)));
    expect(s.push.idle).toBe(false);
    s.prefetch.consider([{ task: s.task("t1", first), machine: s.machine }]);
    expect(s.worker.requests).toEqual([]);
    // A small upload (an audio) is no use of the link worth waiting for.
    await s.push.forTask(10_000, async () => expect(s.push.idle).toBe(false));
    expect(s.idles()).toBe(0);
    release();
    await upload;
    expect(s.push.idle).toBe(true);
    expect(s.idles()).toBe(1);
    s.prefetch.consider([{ task: s.task("t1", first), machine: s.machine }]);
    // Asked first: the machine said it holds it, so nothing crosses.
    await until(() => s.worker.requests.length === 1 && s.push.idle);
    expect(s.worker.requests).toEqual([`HEAD /v1/blobs/${first.sha256}`]);
    expect(s.machine.hasBlob(first.sha256)).toBe(true);
  });

  it("looks only at each machine's next task per slot, and skips templates it holds", async () => {
    const s = await setUp((method) => (method === "HEAD" ? { status: 200 } : { status: 500 }));
    const [first, second] = s.templates as [
      { sha256: string; bytes: number },
      { sha256: string; bytes: number },
    ];
    s.machine.knowBlob(first.sha256);
    // One slot: its next task has its template; the one after may well start elsewhere.
    s.prefetch.consider([
      { task: s.task("t1", first), machine: s.machine },
      { task: s.task("t2", second), machine: s.machine },
    ]);
    expect(s.push.idle).toBe(true);
    expect(s.worker.requests).toEqual([]);
  });

  it("sends nothing to a machine that takes no work", async () => {
    const s = await setUp(() => ({ status: 500 }));
    const [first] = s.templates as [{ sha256: string; bytes: number }];
    s.machine.setDraining(true);
    s.prefetch.consider([{ task: s.task("t1", first), machine: s.machine }]);
    expect(s.push.idle).toBe(true);
    expect(s.worker.requests).toEqual([]);
  });
  it("sends a waiting task's audio at once, without asking, while a big send uses the link", async () => {
    const s = await setUp(storing);
    const [template] = s.templates as [{ sha256: string; bytes: number }];
    const [audio] = s.audios as [{ sha256: string; bytes: number }];
    s.machine.knowBlob(template.sha256);
    let release: () => void = () => undefined;
    const upload = s.push.forTask(5_000_000, () => new Promise<void>((resolve) => (release = resolve)));
    s.prefetch.consider([{ task: s.task("t1", template, audio), machine: s.machine }]);
    // No HEAD first: the audio came with its task, so a machine is unlikely to hold it.
    await until(() => s.machine.hasBlob(audio.sha256));
    expect(s.worker.requests).toEqual([`PUT /v1/blobs/${audio.sha256}`]);
    expect(s.push.idle).toBe(false);
    release();
    await upload;
  });

  it("sends a small input only once the job starting on that machine has its answer", async () => {
    const { s, audio, answer, start } = await waitingBehindAStart();
    for (let i = 0; i < 5; i++) await setImmediate();
    expect(s.worker.requests).toEqual([]);
    answer();
    await start;
    await until(() => s.machine.hasBlob(audio.sha256));
    expect(s.worker.requests).toEqual([`PUT /v1/blobs/${audio.sha256}`]);
  });

  it("sends nothing that waited for a start to a machine that meanwhile stopped taking work", async () => {
    const { s, audio, answer, start } = await waitingBehindAStart();
    s.machine.setDraining(true);
    answer();
    await start;
    for (let i = 0; i < 5; i++) await setImmediate();
    expect(s.worker.requests).toEqual([]);
    expect(s.machine.uploadUnderWay(audio.sha256)).toBeUndefined();
  });

  it("sends each slot's next task's audio, but one template at a time", async () => {
    const s = await setUp(storing, 2);
    const [first, second] = s.templates as [
      { sha256: string; bytes: number },
      { sha256: string; bytes: number },
    ];
    const [a1, a2] = s.audios as [{ sha256: string; bytes: number }, { sha256: string; bytes: number }];
    s.prefetch.consider([
      { task: s.task("t1", first, a1), machine: s.machine },
      { task: s.task("t2", second, a2), machine: s.machine },
      // A third task for two slots may well start elsewhere: nothing of it travels.
      { task: s.task("t3", second, s.audios[0] ?? a1), machine: s.machine },
    ]);
    await until(
      () => s.machine.hasBlob(first.sha256) && s.machine.hasBlob(a1.sha256) && s.machine.hasBlob(a2.sha256),
    );
    expect(sends(s.worker.requests).sort()).toEqual(
      [`PUT /v1/blobs/${first.sha256}`, `PUT /v1/blobs/${a1.sha256}`, `PUT /v1/blobs/${a2.sha256}`].sort(),
    );
    expect(s.machine.hasBlob(second.sha256)).toBe(false);
  });

  it("sends no audio for a text task (it has none until it is spoken)", async () => {
    const s = await setUp(() => ({ status: 201 }));
    const [template] = s.templates as [{ sha256: string; bytes: number }];
    s.machine.knowBlob(template.sha256);
    const text = { ...s.task("t1", template), speech: "hello", audio_sha256: "", audio_bytes: 0 } as TaskRow;
    s.prefetch.consider([{ task: text, machine: s.machine }]);
    expect(s.push.idle).toBe(true);
    expect(s.worker.requests).toEqual([]);
  });
});
