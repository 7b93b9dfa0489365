import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { blobStoreForEachTest } from "../helpers/blob-store.js";

/**
 * A small upload is held in memory while it arrives (StageOptions.holdUpTo) and written only once
 * its hash says the store lacks it: a template sent with every task is not written, linked and
 * removed again each time.
 */
describe("an upload held in memory", () => {
  const HOLD = 64 * 1024;
  const t = blobStoreForEachTest({ heldBytesInAll: 4 * HOLD });
  const content = randomBytes(20_000);
  const sha = createHash("sha256").update(content).digest("hex");

  const temps = () => readdir(join(t.dir, "blobs", ".tmp"));
  /** `bytes` in chunks of 4 kB, as a socket would bring them. */
  const arriving = (bytes: Buffer) =>
    Readable.from(
      Array.from({ length: Math.ceil(bytes.length / 4096) }, (_, i) =>
        bytes.subarray(i * 4096, (i + 1) * 4096),
      ),
    );

  it("is written once its hash is known, then moved into place, with its content at hand", async () => {
    const staged = await t.blobs.stage(arriving(content), { holdUpTo: HOLD });
    expect(staged.sha256).toBe(sha);
    expect(staged.content?.equals(content)).toBe(true);
    expect(t.blobs.heldBytes).toBe(content.length);
    // The store lacked it: the staged file is there for whoever reads it by path (ffprobe).
    expect(await readFile(staged.path)).toEqual(content);
    await t.blobs.commitWhile([staged], async () => undefined);
    expect(await readFile(t.blobs.path(sha))).toEqual(content);
    expect((await stat(t.blobs.path(sha))).nlink).toBe(1);
    expect(await temps()).toEqual([]);
    expect(staged.content).toBeUndefined();
    expect(t.blobs.heldBytes).toBe(0);
  });

  it("writes nothing when the store has the content: its path is the store's file, which stays as it was", async () => {
    await t.blobs.put(Readable.from([content]));
    const before = await stat(t.blobs.path(sha));
    const staged = await t.blobs.stage(arriving(content), { holdUpTo: HOLD });
    expect(staged.path).toBe(t.blobs.path(sha));
    expect(await temps()).toEqual([]);
    await t.blobs.commitWhile([staged], async () => undefined);
    const after = await stat(t.blobs.path(sha));
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await temps()).toEqual([]);
    expect(t.blobs.heldBytes).toBe(0);
  });

  it("goes to its temp file once it is larger than it may be held, as any upload does", async () => {
    const large = randomBytes(HOLD + 1);
    const staged = await t.blobs.stage(arriving(large), { holdUpTo: HOLD });
    expect(staged.content).toBeUndefined();
    expect(t.blobs.heldBytes).toBe(0);
    expect(await readFile(staged.path)).toEqual(large);
    await t.blobs.commitWhile([staged], async () => undefined);
    expect(await readFile(t.blobs.path(staged.sha256))).toEqual(large);
    expect(await temps()).toEqual([]);
  });

  it("goes to its temp file when the uploads held already take the whole budget", async () => {
    const held = [];
    for (let i = 0; i < 4; i++)
      held.push(await t.blobs.stage(Readable.from([randomBytes(HOLD)]), { holdUpTo: HOLD }));
    expect(held.every((s) => s.content !== undefined)).toBe(true);
    expect(t.blobs.heldBytes).toBe(4 * HOLD);
    const fifth = await t.blobs.stage(arriving(content), { holdUpTo: HOLD });
    expect(fifth.content).toBeUndefined();
    expect(await readFile(fifth.path)).toEqual(content);
    // A discarded upload gives its share back, and the next one is held again.
    await held[0]?.discard();
    expect(t.blobs.heldBytes).toBe(3 * HOLD);
    const sixth = await t.blobs.stage(arriving(content), { holdUpTo: HOLD });
    expect(sixth.content?.equals(content)).toBe(true);
    for (const s of [...held, fifth, sixth]) await s.discard();
    expect(t.blobs.heldBytes).toBe(0);
    expect(await temps()).toEqual([]);
  });

  it.each([
    ["larger than allowed while held", 10_000],
    ["larger than allowed once in its temp file", HOLD + 10_000],
  ])("refused when %s, leaves nothing on disk or in memory", async (_what, maxBytes) => {
    const tooLarge = randomBytes(maxBytes + 5_000);
    await expect(
      t.blobs.stage(arriving(tooLarge), {
        holdUpTo: HOLD,
        maxBytes,
        onTooLarge: () => new Error("too large"),
      }),
    ).rejects.toThrow("too large");
    expect(await temps()).toEqual([]);
    expect(t.blobs.heldBytes).toBe(0);
  });

  it.each([
    ["while held", 8_000],
    ["after it went to its temp file", HOLD + 8_000],
  ])("cut short %s, leaves nothing on disk or in memory", async (_what, before) => {
    const source = new Readable({ read() {} });
    const staging = t.blobs.stage(source, { holdUpTo: HOLD });
    source.push(randomBytes(before));
    await new Promise((resolve) => setImmediate(resolve));
    source.destroy(new Error("client gone"));
    await expect(staging).rejects.toThrow("client gone");
    expect(await temps()).toEqual([]);
    expect(t.blobs.heldBytes).toBe(0);
  });

  it("that hashes to something else than expected is refused and given back", async () => {
    await expect(
      t.blobs.stage(arriving(content), { holdUpTo: HOLD, expectedSha256: "0".repeat(64) }),
    ).rejects.toThrow(/hashes to/);
    expect(t.blobs.heldBytes).toBe(0);
    expect(await temps()).toEqual([]);
  });
});
