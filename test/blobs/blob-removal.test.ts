import { randomBytes } from "node:crypto";
import { readdir, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as delay, setImmediate as tick } from "node:timers/promises";
import { beforeEach, describe, expect, it } from "vitest";
import { BlobStore, type StageOptions } from "../../src/blobs/blob-store.js";
import { blobStoreForEachTest } from "../helpers/blob-store.js";

/**
 * The protocol that lets retention delete a shared blob while an upload of the same content is
 * being recorded (blob-store.ts): the writer commits, records, puts its copy back if it vanished;
 * the deleter moves the file aside, asks the store, puts it back if needed. `rows` stands for the
 * store: the hashes some committed row references. An upload held in memory (holdUpTo) keeps its
 * bytes, not a second link, to put back; the protocol must hold for both.
 */
describe.each<[string, StageOptions]>([
  ["written to a temp file", {}],
  ["held in memory", { holdUpTo: 1024 * 1024 }],
])("deleting a blob while the same content is uploaded (%s)", (_how, stageOptions) => {
  const t = blobStoreForEachTest();
  const rows = new Set<string>();
  const content = randomBytes(4096);

  beforeEach(() => rows.clear());

  const stage = () => t.blobs.stage(Readable.from([content]), stageOptions);
  const onDisk = async (sha: string) => (await readFile(t.blobs.path(sha))).equals(content);

  it("keeps the file when the upload's row commits while the file is aside", async () => {
    const old = await t.blobs.put(Readable.from([content]));
    const staged = await stage();
    const freed = await t.blobs.removeUnlessNeeded(old.sha256, async () => {
      // The file is aside now; the upload commits its copy and its row before the store is asked.
      await t.blobs.commitWhile([staged], async () => rows.add(staged.sha256));
      return rows.has(old.sha256);
    });
    expect(freed).toBe(0);
    expect(await onDisk(old.sha256)).toBe(true);
  });

  it("puts the upload's copy back when the sweep decided before the row committed", async () => {
    await t.blobs.put(Readable.from([content]));
    const staged = await stage();
    await t.blobs.commitWhile([staged], async () => {
      // The sweep saw no row (this one is not committed yet) and deletes the file.
      const freed = await t.blobs.removeUnlessNeeded(staged.sha256, async () => rows.has(staged.sha256));
      expect(freed).toBe(content.length);
      rows.add(staged.sha256);
    });
    expect(await onDisk(staged.sha256)).toBe(true);
    // The writer's extra link is gone: nothing is left in the temp folder.
    expect(await readdir(join(t.dir, "blobs", ".tmp"))).toEqual([]);
  });

  it("holds under random interleavings: a referenced hash always has its file", async () => {
    for (let round = 0; round < 200; round++) {
      rows.clear();
      await t.blobs.put(Readable.from([content]));
      const sha = await stage().then(async (s) => {
        await s.discard();
        return s.sha256;
      });
      // Up to a few ms: long enough for either side's file steps to fall between the other's.
      const pause = async () => {
        if (Math.random() < 0.3) await tick();
        else await delay(Math.random() * 3);
      };
      const upload = async () => {
        const staged = await stage();
        await pause();
        await t.blobs.commitWhile([staged], async () => {
          await pause();
          rows.add(sha);
        });
      };
      const sweep = async () => {
        await pause();
        await t.blobs.removeUnlessNeeded(sha, async () => {
          await pause();
          return rows.has(sha);
        });
      };
      await Promise.all([upload(), sweep(), sweep()]);
      expect(rows.has(sha)).toBe(true);
      expect(await onDisk(sha)).toBe(true);
      // Nothing is left behind on either side.
      expect(await readdir(join(t.dir, "blobs", ".tmp"))).toEqual([]);
      expect(await readdir(join(t.dir, "blobs", ".trash"))).toEqual([]);
      // And once no row needs it, it goes.
      rows.clear();
      expect(await t.blobs.removeUnlessNeeded(sha, async () => rows.has(sha))).toBe(content.length);
      expect(await t.blobs.has(sha)).toBeUndefined();
    }
  });
});

describe("the store's folder", () => {
  const t = blobStoreForEachTest();
  const content = randomBytes(4096);

  const onDisk = async (sha: string) => (await readFile(t.blobs.path(sha))).equals(content);

  it("puts a blob a crash left aside back at start-up, for the orphan sweep to judge", async () => {
    const blob = await t.blobs.put(Readable.from([content]));
    const aside = join(t.dir, "blobs", ".trash", `${blob.sha256}.crashed`);
    await rename(t.blobs.path(blob.sha256), aside);
    await new BlobStore(join(t.dir, "blobs")).init();
    expect(await onDisk(blob.sha256)).toBe(true);
    expect(await readdir(join(t.dir, "blobs", ".trash"))).toEqual([]);
  });

  it("lists every blob in place with its size", async () => {
    const a = await t.blobs.put(Readable.from([content]));
    const b = await t.blobs.put(Readable.from([Buffer.from("other")]));
    const listed = [];
    for await (const blob of t.blobs.list()) listed.push({ sha256: blob.sha256, bytes: blob.bytes });
    expect(listed.sort((x, y) => x.sha256.localeCompare(y.sha256))).toEqual(
      [
        { sha256: a.sha256, bytes: content.length },
        { sha256: b.sha256, bytes: 5 },
      ].sort((x, y) => x.sha256.localeCompare(y.sha256)),
    );
  });
});
