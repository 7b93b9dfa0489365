import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { audioSeconds } from "../../src/engines/audio-seconds.js";
import { EngineError } from "../../src/errors.js";
import { isAbortError } from "../../src/media/run-ffmpeg.js";
import { makeAudio, makeNotMedia, makeVideo } from "../helpers/media.js";

describe("audioSeconds", () => {
  let dir: string;
  const never = new AbortController().signal;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mh-audio-seconds-"));
    await makeAudio(join(dir, "a.wav"), { seconds: 1.5 });
    await makeNotMedia(join(dir, "text.wav"));
    await makeVideo(join(dir, "silent.mp4"), { seconds: 1 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("takes the gateway's measure when there is one, without probing", async () => {
    expect(await audioSeconds({ audioPath: join(dir, "absent.wav"), audioDuration: 7.25 }, never)).toBe(7.25);
  });

  it("probes the file otherwise", async () => {
    expect(await audioSeconds({ audioPath: join(dir, "a.wav") }, never)).toBeCloseTo(1.5, 1);
  });

  it("blames the input for a file that is not audio, or has no audio stream", async () => {
    for (const name of ["text.wav", "silent.mp4"]) {
      const err: unknown = await audioSeconds({ audioPath: join(dir, name) }, never).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(EngineError);
      expect(err, name).toMatchObject({ kind: "input" });
    }
  });

  it("rejects with the job's abort once it is aborted", async () => {
    const abort = new AbortController();
    abort.abort(new Error("cancelled by the gateway"));
    const err: unknown = await audioSeconds({ audioPath: join(dir, "a.wav") }, abort.signal).catch(
      (e: unknown) => e,
    );
    expect(isAbortError(err)).toBe(true);
  });
});
