import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MediaInspector, readHeader } from "../../src/gateway/media-inspector.js";
import { probeMedia } from "../../src/media/probe.js";
import { openSqlite } from "../../src/store/database.js";
import { MediaFactsStore } from "../../src/store/media-facts-store.js";
import { makeAudio, makeVideo } from "../helpers/media.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "media-inspector-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An inspector on a real store file that counts how often each way of measuring runs. */
async function counted() {
  const db = await openSqlite(join(dir, "store.db"));
  const calls = { probe: 0, header: 0 };
  const inspector = new MediaInspector(new MediaFactsStore(db), {
    probe: (path, options) => {
      calls.probe += 1;
      return probeMedia(path, options);
    },
    readHeader: (path, kind) => {
      calls.header += 1;
      return readHeader(path, kind);
    },
  });
  return { db, calls, inspector };
}

describe("MediaInspector", () => {
  it.each([
    ["an H.264 MP4 from its header", "template.mp4", { probe: 0, header: 1 }],
    // Matroska is not read in process: the header reading declines it, then ffprobe runs.
    ["a Matroska template with ffprobe", "template.mkv", { probe: 1, header: 1 }],
  ])("measures %s once per content, even across a restart", async (_what, name, once) => {
    const video = join(dir, name);
    await makeVideo(video, { seconds: 1, width: 64, height: 64 });
    const file = { path: video, sha256: "a".repeat(64) };

    const first = await counted();
    const media = await first.inspector.inspect(file, "video");
    expect(media.video).toMatchObject({ codec: "h264", width: 64, height: 64, fps: 25 });
    for (let i = 0; i < 5; i++) expect(await first.inspector.inspect(file, "video")).toEqual(media);
    expect(first.calls).toEqual(once);
    await first.db.destroy();

    const second = await counted();
    expect(await second.inspector.inspect(file, "video")).toEqual(media);
    expect(second.calls).toEqual({ probe: 0, header: 0 });
    await second.db.destroy();
  });

  it("reads a WAV from its header without ffprobe", async () => {
    const audio = join(dir, "speech.wav");
    await makeAudio(audio, { seconds: 1.5, sampleRate: 16_000 });
    const { db, calls, inspector } = await counted();
    const media = await inspector.inspect({ path: audio, sha256: "b".repeat(64) }, "audio");
    expect(media.durationSec).toBeCloseTo(1.5, 2);
    expect(calls).toEqual({ probe: 0, header: 1 });
    await db.destroy();
  });

  it("still checks what a task needs when the facts come from the store", async () => {
    const audio = join(dir, "speech.wav");
    await makeAudio(audio, { seconds: 1 });
    const file = { path: audio, sha256: "c".repeat(64) };
    const { db, inspector } = await counted();
    await inspector.inspect(file, "audio");
    // The same content sent again, now as the video: known facts, and still no video stream.
    await expect(inspector.inspect(file, "video")).rejects.toMatchObject({
      code: "INVALID_MEDIA",
      statusCode: 400,
      field: "video",
    });
    await db.destroy();
  });

  it("refuses a manifest as INVALID_MEDIA naming the field, not the path, and keeps no facts", async () => {
    const manifest = join(dir, "upload.mpd");
    await writeFile(
      manifest,
      '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period/></MPD>\n',
    );
    const file = { path: manifest, sha256: "d".repeat(64) };
    const { db, calls, inspector } = await counted();
    const err = await inspector.inspect(file, "video").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_MEDIA", statusCode: 400, field: "video" });
    expect((err as Error).message).not.toContain(dir);
    await inspector.inspect(file, "video").catch(() => undefined);
    expect(calls.probe).toBe(2);
    await db.destroy();
  });
});
