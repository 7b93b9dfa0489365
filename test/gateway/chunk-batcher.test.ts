import { createHash } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { ChunkBatcher, inLargerChunks } from "../../src/gateway/api/chunk-batcher.js";
import { until } from "../helpers/until.js";

const KiB = 1024;

/** Every chunk a stream pushes, in order ('data' events: async iteration would join them). */
async function chunksOf(stream: Readable): Promise<Buffer[]> {
  const out: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => out.push(chunk));
  await finished(stream);
  return out;
}

/** A socket's way of delivering: 64 KiB reads, then what is left. */
function socketLike(total: number): { stream: Readable; sha256: string } {
  const data = Buffer.alloc(total);
  for (let i = 0; i < total; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  const parts: Buffer[] = [];
  for (let at = 0; at < total; at += 64 * KiB) parts.push(data.subarray(at, Math.min(total, at + 64 * KiB)));
  return { stream: Readable.from(parts), sha256: createHash("sha256").update(data).digest("hex") };
}

describe("a form's file in larger chunks", () => {
  it.each([
    ["several batches and a remainder", 100 * 64 * KiB + 10],
    ["less than one batch", 3 * 64 * KiB],
    ["exactly one batch", 256 * KiB],
    ["nothing", 0],
  ])("passes every byte on, in chunks of at least 256 KiB but the last: %s", async (_what, total) => {
    const { stream, sha256 } = socketLike(total);
    const chunks = await chunksOf(inLargerChunks(stream));
    const hash = createHash("sha256");
    for (const chunk of chunks) hash.update(chunk);
    expect(hash.digest("hex")).toBe(sha256);
    expect(chunks.slice(0, -1).every((c) => c.length >= 256 * KiB)).toBe(true);
    expect(chunks.length).toBe(Math.ceil(total / (256 * KiB)));
  });

  it("gathers to the size it is given, and passes a large chunk on whole", async () => {
    const big = Buffer.alloc(300 * KiB, 7);
    const chunks = await chunksOf(
      Readable.from([Buffer.alloc(10, 1), Buffer.alloc(10, 2), Buffer.alloc(10, 3), big]).pipe(
        new ChunkBatcher(25, 60_000),
      ),
    );
    expect(chunks.map((c) => c.length)).toEqual([30, 300 * KiB]);
    // A single chunk over the size is the same buffer, not a copy.
    expect((await chunksOf(Readable.from([big]).pipe(new ChunkBatcher(25, 60_000))))[0]).toBe(big);
  });

  it("passes on what it holds when no more comes: a client that stops sending", async () => {
    const file = new PassThrough();
    const gathered = inLargerChunks(file);
    const seen: Buffer[] = [];
    gathered.on("data", (chunk: Buffer) => seen.push(chunk));
    file.write(Buffer.alloc(1000, 5));
    // Nothing else is sent, and the file has not ended: its first kilobyte still comes through.
    await until(() => seen.length === 1);
    expect(seen[0]?.length).toBe(1000);
    file.end(Buffer.alloc(10, 6));
    await finished(gathered);
    expect(seen.map((c) => c.length)).toEqual([1000, 10]);
  });

  it("fails as the form's file fails: a client cut off mid-file", async () => {
    const file = new PassThrough();
    const gathered = inLargerChunks(file);
    const read = chunksOf(gathered);
    file.write(Buffer.alloc(64 * KiB));
    file.destroy(new Error("Unexpected end of form"));
    await expect(read).rejects.toThrow("Unexpected end of form");
    expect(gathered.destroyed).toBe(true);
  });

  it("ends early, not never, for a file destroyed before it is read", async () => {
    const file = new PassThrough();
    file.destroy();
    const gathered = inLargerChunks(file);
    await expect(finished(gathered)).rejects.toMatchObject({ code: "ERR_STREAM_PREMATURE_CLOSE" });
  });

  it("lets go of the form's file when its reader stops", async () => {
    const file = new PassThrough();
    const gathered = inLargerChunks(file);
    gathered.destroy(new Error("too large"));
    await finished(file).catch(() => undefined);
    expect(file.destroyed).toBe(true);
  });
});
