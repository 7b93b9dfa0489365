import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { gatewayId } from "../../src/gateway/gateway-id.js";
import { removeDir, tempDir } from "../helpers/gateway.js";

/**
 * One blob folder under several gateways (`--blobs-dir`, issue 13): a gateway's start clears the
 * temp files a crash of its own left there, never another gateway's write under way (the chaos
 * test met that as a 400 INVALID_MEDIA for a good upload, its file deleted under it).
 */
describe("a blob folder shared by several gateways", () => {
  let dir: string;
  let root: string;

  beforeEach(async () => {
    dir = await tempDir();
    root = join(dir, "blobs");
  });
  afterEach(async () => removeDir(dir));

  it("a start clears its own and unnamed leftovers, and leaves another gateway's staged upload alone", async () => {
    const a = new BlobStore(root, { owner: "aaaaaaaaaaaaaaaa" });
    await a.init();
    const content = randomBytes(1024);
    const staged = await a.stage(Readable.from([content]));
    // What a kill -9 of B left, and what a version without owners left.
    await writeFile(join(root, ".tmp", "bbbbbbbbbbbbbbbb.0a1b2c3d-dead-4bad-beef-000000000000"), "half");
    await writeFile(join(root, ".tmp", "0a1b2c3d-dead-4bad-beef-000000000001"), "half");

    await new BlobStore(root, { owner: "bbbbbbbbbbbbbbbb" }).init();
    expect(await readdir(join(root, ".tmp"))).toEqual([staged.path.split("/").pop()]);
    await a.commitWhile([staged], async () => undefined);
    expect((await readFile(a.path(staged.sha256))).equals(content)).toBe(true);
    expect(await readdir(join(root, ".tmp"))).toEqual([]);
  });

  it("names a gateway once, for good: the same id at every start on its data dir, another on another", async () => {
    const first = join(dir, "gateway-a");
    await mkdir(first);
    const id = await gatewayId(first);
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(await gatewayId(first)).toBe(id);
    const second = join(dir, "gateway-b");
    await mkdir(second);
    expect(await gatewayId(second)).not.toBe(id);
    expect(() => new BlobStore(root, { owner: "not hex" })).toThrow(/16 hex digits/);
  });
});
