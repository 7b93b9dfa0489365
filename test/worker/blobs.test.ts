import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { sha256, workerHarness } from "./harness.js";

const h = workerHarness();
afterEach(() => h.cleanup());

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe("worker blobs", () => {
  it("stores an upload under its hash, reports it by HEAD and accepts it again", async () => {
    const w = await h.start();
    const content = Buffer.from("a small avatar video");
    const hash = sha256(content);

    expect((await w.call(`/v1/blobs/${hash}`, { method: "HEAD" })).status).toBe(404);

    const first = await w.call(`/v1/blobs/${hash}`, {
      method: "PUT",
      body: content,
      headers: { "content-type": "application/octet-stream" },
    });
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ sha256: hash, bytes: content.length });

    const head = await w.call(`/v1/blobs/${hash}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(content.length));

    const again = await w.call(`/v1/blobs/${hash}`, { method: "PUT", body: content });
    expect(again.status).toBe(200);
    expect(await readFile(join(w.dataDir, "blobs", hash.slice(0, 2), hash))).toEqual(content);
  });

  it("streams a multi-megabyte upload sent without a content type", async () => {
    const w = await h.start();
    const content = Buffer.alloc(8 * 1024 * 1024, 7);
    const hash = sha256(content);
    const res = await w.call(`/v1/blobs/${hash}`, { method: "PUT", body: content });
    expect(res.status).toBe(201);
    const head = await w.call(`/v1/blobs/${hash}`, { method: "HEAD" });
    expect(head.headers.get("content-length")).toBe(String(content.length));
  });

  it("rejects content that hashes differently and leaves nothing on disk", async () => {
    const w = await h.start();
    const claimed = sha256("what the gateway meant to send");
    const res = await w.call(`/v1/blobs/${claimed}`, {
      method: "PUT",
      body: "something else arrived",
      headers: { "content-type": "application/octet-stream" },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "BLOB_HASH_MISMATCH" });
    expect((await w.call(`/v1/blobs/${claimed}`, { method: "HEAD" })).status).toBe(404);
    expect(await filesUnder(join(w.dataDir, "blobs"))).toEqual([]);
  });

  it("refuses a name that is not a sha256", async () => {
    const w = await h.start();
    const res = await w.call("/v1/blobs/not-a-hash", { method: "PUT", body: "x" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "INVALID_REQUEST" });
  });
});
