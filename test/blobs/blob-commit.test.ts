import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";

/**
 * `commitWhile` puts an upload in place under its hash and keeps its temp copy until the rows are
 * recorded. A template uploaded again with every task is already there: that file stays as it is.
 */
describe("committing an upload", () => {
  let dir: string;
  let blobs: BlobStore;
  const content = randomBytes(4096);

  beforeEach(async () => {
    dir = await tempDir();
    blobs = new BlobStore(join(dir, "blobs"));
    await blobs.init();
  });
  afterEach(async () => removeDir(dir));

  const commit = async () => {
    const staged = await blobs.stage(Readable.from([content]));
    await blobs.commitWhile([staged], async () => undefined);
    return staged.sha256;
  };

  it("puts new content in place, in a fan-out folder made for it, and leaves no temp file", async () => {
    const expected = createHash("sha256").update(content).digest("hex");
    expect(await readdir(join(dir, "blobs"))).not.toContain(expected.slice(0, 2));
    const sha = await commit();
    expect(sha).toBe(expected);
    expect(await readFile(blobs.path(sha))).toEqual(content);
    expect(await readdir(join(dir, "blobs", ".tmp"))).toEqual([]);
  });

  it("leaves content already in place as the very file it was", async () => {
    const sha = await commit();
    const before = await stat(blobs.path(sha));
    expect(await commit()).toBe(sha);
    const after = await stat(blobs.path(sha));
    expect(after.ino).toBe(before.ino);
    // The upload's own copy is gone: one link left, nothing in the temp folder.
    expect(after.nlink).toBe(1);
    expect(await readFile(blobs.path(sha))).toEqual(content);
    expect(await readdir(join(dir, "blobs", ".tmp"))).toEqual([]);
  });
});
