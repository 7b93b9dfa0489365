import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";
import { BlobStore, type BlobStoreOptions } from "../../src/blobs/blob-store.js";
import { removeDir, tempDir } from "./gateway.js";

/**
 * A fresh blob store under a temp dir for each test of the calling block (`<dir>/blobs`), removed
 * after it. Read `dir` and `blobs` inside the tests: they change from test to test.
 */
export function blobStoreForEachTest(options: BlobStoreOptions = {}): { dir: string; blobs: BlobStore } {
  const current = {} as { dir: string; blobs: BlobStore };
  beforeEach(async () => {
    current.dir = await tempDir();
    current.blobs = new BlobStore(join(current.dir, "blobs"), options);
    await current.blobs.init();
  });
  afterEach(async () => removeDir(current.dir));
  return current;
}
