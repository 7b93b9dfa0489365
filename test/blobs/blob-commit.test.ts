import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { blobStoreForEachTest } from "../helpers/blob-store.js";

/**
 * `commitWhile` puts an upload in place under its hash and keeps its temp copy until the rows are
 * recorded. A template uploaded again with every task is already there: that file stays as it is.
 */
describe("committing an upload", () => {
  const t = blobStoreForEachTest();
  const content = randomBytes(4096);

  const commit = async () => {
    const staged = await t.blobs.stage(Readable.from([content]));
    await t.blobs.commitWhile([staged], async () => undefined);
    return staged.sha256;
  };

  it("puts new content in place, in a fan-out folder made for it, and leaves no temp file", async () => {
    const expected = createHash("sha256").update(content).digest("hex");
    expect(await readdir(join(t.dir, "blobs"))).not.toContain(expected.slice(0, 2));
    const sha = await commit();
    expect(sha).toBe(expected);
    expect(await readFile(t.blobs.path(sha))).toEqual(content);
    expect(await readdir(join(t.dir, "blobs", ".tmp"))).toEqual([]);
  });

  it("leaves content already in place as the very file it was", async () => {
    const sha = await commit();
    const before = await stat(t.blobs.path(sha));
    expect(await commit()).toBe(sha);
    const after = await stat(t.blobs.path(sha));
    expect(after.ino).toBe(before.ino);
    // The upload's own copy is gone: one link left, nothing in the temp folder.
    expect(after.nlink).toBe(1);
    expect(await readFile(t.blobs.path(sha))).toEqual(content);
    expect(await readdir(join(t.dir, "blobs", ".tmp"))).toEqual([]);
  });
});
