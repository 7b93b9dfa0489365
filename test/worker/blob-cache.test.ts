import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { DEFAULT_CACHE_SHARE, type DiskStats, defaultCacheMaxBytes } from "../../src/worker/blob-cache.js";
import { parseScrape, sampleValue } from "../helpers/prometheus.js";
import { until } from "../helpers/until.js";
import { sha256, type TestWorker, workerHarness } from "./harness.js";

const h = workerHarness();
afterEach(() => h.cleanup());

/** Every blob is this big, so limits read as "how many fit". */
const SIZE = 1000;

function content(tag: string): Buffer {
  return Buffer.alloc(SIZE, tag);
}

async function present(w: TestWorker, tag: string): Promise<boolean> {
  const res = await w.call(`/v1/blobs/${sha256(content(tag))}`, { method: "HEAD" });
  return res.status === 200;
}

async function upload(w: TestWorker, tag: string): Promise<{ sha256: string; bytes: number }> {
  return w.uploadBlob(content(tag));
}

async function metric(w: TestWorker, name: string): Promise<number | undefined> {
  const text = await (await w.call("/metrics")).text();
  return sampleValue(parseScrape(text), name);
}

/** Runs a job on the two blobs to its end, through the GateEngine. */
async function runJob(w: TestWorker, id: string, audio: string, video: string): Promise<void> {
  const res = await w.putJob(id, {
    audio: { sha256: sha256(content(audio)), bytes: SIZE, name: "a.wav" },
    video: { sha256: sha256(content(video)), bytes: SIZE, name: "v.mp4" },
  });
  expect(res.status).toBe(201);
  await until(() => w.engine.isRunning(id));
  w.engine.release(id);
  await until(async () => (await w.job(id)).status === "succeeded");
}

describe("worker input cache (--cache-max-gb)", () => {
  it("evicts the least recently used input first, a job's use counting as use", async () => {
    const w = await h.start({ cacheMaxBytes: 3.5 * SIZE });
    await upload(w, "a1");
    await upload(w, "v1");
    await runJob(w, "j1", "a1", "v1");
    await upload(w, "a2");
    await runJob(w, "j2", "a2", "v1");
    // Three fit. The fourth pushes out a1: uploaded first and not used since.
    await upload(w, "a3");
    await until(async () => !(await present(w, "a1")));
    expect(await present(w, "a2")).toBe(true);
    // v1 came before a2 but a job used it after: a2 is now the least recently used.
    await runJob(w, "j3", "a3", "v1");
    await upload(w, "a4");
    await until(async () => !(await present(w, "a2")));
    for (const tag of ["v1", "a3", "a4"]) expect(await present(w, tag)).toBe(true);

    expect(await metric(w, "multi_heygem_worker_blob_cache_evictions_total")).toBe(2);
    expect(await metric(w, "multi_heygem_worker_blob_cache_bytes")).toBe(3 * SIZE);
    expect(await metric(w, "multi_heygem_worker_blob_cache_limit_bytes")).toBe(3.5 * SIZE);
  });

  it("never evicts what a queued or running job needs, even far over the limit", async () => {
    const w = await h.start({ cacheMaxBytes: 1 });
    for (const tag of ["a", "v", "x", "y"]) await upload(w, tag);
    const body = (audio: string, video: string) => ({
      audio: { sha256: sha256(content(audio)), bytes: SIZE, name: "a.wav" },
      video: { sha256: sha256(content(video)), bytes: SIZE, name: "v.mp4" },
    });
    expect((await w.putJob("running", body("a", "v"))).status).toBe(201);
    expect((await w.putJob("queued", body("x", "y"))).status).toBe(201);
    await until(() => w.engine.isRunning("running"));
    expect((await w.job("queued")).status).toBe("queued");
    // An upload makes the cache look for room: nothing may go.
    await upload(w, "z");
    expect(await metric(w, "multi_heygem_worker_blob_cache_bytes")).toBe(5 * SIZE);
    for (const tag of ["a", "v", "x", "y", "z"]) expect(await present(w, tag)).toBe(true);

    // Its job over, a and v may go; x and y wait for theirs, which then runs on them.
    w.engine.release("running");
    await until(async () => !(await present(w, "a")) && !(await present(w, "v")));
    expect(await present(w, "x")).toBe(true);
    await until(() => w.engine.isRunning("queued"));
    w.engine.release("queued");
    await until(async () => (await w.job("queued")).status === "succeeded");
    await until(async () => !(await present(w, "x")) && !(await present(w, "y")));
    // z was uploaded for a job that has not come yet: it stays for it.
    expect(await present(w, "z")).toBe(true);
    expect(await metric(w, "multi_heygem_worker_blob_cache_evictions_total")).toBe(4);
  });

  it("keeps the use order across a restart, in the files' modification times", async () => {
    const dataDir = await h.tempDir();
    const first = await h.start({ dataDir, cacheMaxBytes: 0 });
    await upload(first, "x");
    await upload(first, "y");
    // x is used after y arrived; the clock must have moved past y's mtime for the order to show.
    const yMtime = (
      await stat(join(dataDir, "blobs", sha256(content("y")).slice(0, 2), sha256(content("y"))))
    ).mtimeMs;
    await until(() => Date.now() > yMtime + 1);
    await runJob(first, "j1", "x", "x");
    await first.handle.close();

    // By upload order x would go; by use, y.
    const second = await h.start({ dataDir, cacheMaxBytes: 1.5 * SIZE });
    expect(await present(second, "y")).toBe(false);
    expect(await present(second, "x")).toBe(true);
    expect(await metric(second, "multi_heygem_worker_blob_cache_bytes")).toBe(SIZE);
  });

  it("refuses an upload with 507 only when the disk itself has no room, after giving up what it can", async () => {
    let freeBytes = 100 * SIZE;
    const statfs = async (): Promise<DiskStats> => ({ bsize: 1, blocks: 1e12, bavail: freeBytes });
    const w = await h.start({ statfs });
    await upload(w, "old");
    await runJob(w, "j1", "old", "old");

    freeBytes = SIZE / 2;
    const big = content("new");
    const res = await w.call(`/v1/blobs/${sha256(big)}`, { method: "PUT", body: big });
    expect(res.status).toBe(507);
    expect(await res.json()).toMatchObject({ error: "INSUFFICIENT_STORAGE" });
    expect(await present(w, "new")).toBe(false);
    // The cache gave up its unused input to make room, which was still not enough.
    expect(await present(w, "old")).toBe(false);
    // The default limit: a quarter of the disk the injected statfs describes.
    expect(await metric(w, "multi_heygem_worker_blob_cache_limit_bytes")).toBe(1e12 * DEFAULT_CACHE_SHARE);
  });
});

describe("a worker reading a shared blob store (the embedded worker)", () => {
  it("runs jobs on the shared blobs without copying, deleting or evicting them", async () => {
    const sharedDir = join(await h.tempDir(), "blobs");
    const shared = new BlobStore(sharedDir);
    await shared.init();
    const { sha256: hash } = await shared.put(Readable.from([content("template")]));
    const w = await h.start({ sharedBlobsDir: sharedDir, cacheMaxBytes: 1 });

    expect(await present(w, "template")).toBe(true);
    const ref = { sha256: hash, bytes: SIZE, name: "v.mp4" };
    expect((await w.putJob("j1", { audio: ref, video: ref })).status).toBe(201);
    await until(() => w.engine.isRunning("j1"));
    // Linked, not copied: the job's input is the shared file itself.
    const input = w.engine.started[0]?.videoPath ?? "";
    expect((await stat(input)).ino).toBe((await stat(shared.path(hash))).ino);
    w.engine.release("j1");
    await until(async () => (await w.job("j1")).status === "succeeded");
    expect((await w.call(`/v1/blobs/${hash}`, { method: "DELETE" })).status).toBe(204);
    await upload(w, "own");
    await runJob(w, "j2", "own", "own");
    await until(async () => !(await present(w, "own")));

    expect(await readFile(shared.path(hash))).toEqual(content("template"));
    expect(await present(w, "template")).toBe(true);
  });
});

describe("the default cache limit", () => {
  it("is a quarter of the size of the file system holding the data dir", async () => {
    const seen: string[] = [];
    const statfs = async (path: string): Promise<DiskStats> => {
      seen.push(path);
      return { bsize: 4096, blocks: 1_000_000, bavail: 10 };
    };
    expect(await defaultCacheMaxBytes("/srv/worker", statfs)).toBe(1_024_000_000);
    expect(seen).toEqual(["/srv/worker"]);
  });
});
