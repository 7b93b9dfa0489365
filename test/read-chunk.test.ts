import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { READ_CHUNK_BYTES, readChunkFor } from "../src/read-chunk.js";
import { removeDir, tempDir } from "./helpers/gateway.js";

describe("readChunkFor", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
  });

  afterAll(async () => {
    await removeDir(dir);
  });

  it("reads a small file in a chunk of its own size, and a big one a megabyte at a time", () => {
    expect(readChunkFor(16_078)).toBe(16_078);
    expect(readChunkFor(100_000_000)).toBe(READ_CHUNK_BYTES);
    expect(readChunkFor(READ_CHUNK_BYTES + 1)).toBe(READ_CHUNK_BYTES);
    // An empty file still needs a read to find its end.
    expect(readChunkFor(0)).toBe(1);
  });

  it("streams every byte of files around its sizes, in as few reads as it says", async () => {
    for (const size of [0, 1, 16_078, READ_CHUNK_BYTES, READ_CHUNK_BYTES + 1, 3 * READ_CHUNK_BYTES - 7]) {
      const content = Buffer.alloc(size, size % 251);
      const path = join(dir, `f${size}`);
      await writeFile(path, content);
      const hash = createHash("sha256");
      let reads = 0;
      const stream = createReadStream(path, { highWaterMark: readChunkFor(size) });
      stream.on("data", () => reads++);
      await pipeline(stream, hash);
      expect(hash.digest("hex")).toBe(createHash("sha256").update(content).digest("hex"));
      expect(reads).toBe(Math.ceil(size / READ_CHUNK_BYTES));
    }
  });
});
