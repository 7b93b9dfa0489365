import { mkdtemp, readFile, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readAudioHeader } from "../../src/media/audio-header.js";
import { probeMedia } from "../../src/media/probe.js";
import { runFfmpeg } from "../../src/media/run-ffmpeg.js";
import { makeAudio, makeNotMedia, makeVideo } from "../helpers/media.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "audio-header-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A 2.5 s 16 kHz tone in `dir`: the codec `makeAudio` picks for the extension, or the one given. */
async function tone(name: string, codec?: string): Promise<string> {
  const path = join(dir, name);
  await makeAudio(path, { seconds: 2.5, sampleRate: 16_000, ...(codec ? { codec } : {}) });
  return path;
}

describe("readAudioHeader", () => {
  it.each([
    ["a.wav", undefined, "wav", "pcm"],
    ["a.mp3", undefined, "mp3", "mp3"],
    ["a.m4a", undefined, "mov,mp4,m4a,3gp,3g2,mj2", "aac"],
    ["a.flac", "flac", "flac", "flac"],
    ["a.ogg", "libvorbis", "ogg", "vorbis"],
    ["a.opus", "libopus", "ogg", "opus"],
  ])("measures %s in process, as ffprobe does", async (name, codec, formatName, audioCodec) => {
    const path = await tone(name, codec);
    const header = await readAudioHeader(path);
    const probed = await probeMedia(path);
    expect(header).toMatchObject({ formatName, audio: { index: 0, codec: audioCodec, sampleRate: 16_000 } });
    // M4A headers count the encoder's priming samples (1024 at 16 kHz: 64 ms); the rest agree closely.
    expect(Math.abs((header?.durationSec ?? 0) - probed.durationSec)).toBeLessThan(0.1);
    expect(Math.abs((header?.durationSec ?? 0) - 2.5)).toBeLessThan(0.1);
  });

  it.each([
    // 16 kHz mono s16 is 32 kB/s; AAC at 16 kHz 4–6 kB/s, depending on the ffmpeg build.
    ["a.wav", 40],
    ["a.m4a", 600],
  ])("measures %s over 1 MiB too, read from the file rather than held in memory", async (name, seconds) => {
    const path = join(dir, name);
    await makeAudio(path, { seconds, sampleRate: 16_000 });
    expect((await stat(path)).size).toBeGreaterThan(1024 * 1024);
    const header = await readAudioHeader(path);
    const probed = await probeMedia(path);
    expect(header?.audio?.sampleRate).toBe(16_000);
    // Read by this project's own readers (the WAV's chunks, the M4A's moov), as ffprobe reads them.
    expect(Math.abs((header?.durationSec ?? 0) - probed.durationSec)).toBeLessThan(0.002);
    expect(Math.abs((header?.durationSec ?? 0) - seconds)).toBeLessThan(0.1);
  });

  it.each(["a.wav", "a.m4a"])("reads %s as ffprobe does, to the millisecond", async (name) => {
    const path = await tone(name);
    const header = await readAudioHeader(path);
    const probed = await probeMedia(path);
    // An M4A's duration comes from its edit list, which leaves out the encoder's priming samples.
    expect(Math.abs((header?.durationSec ?? 0) - probed.durationSec)).toBeLessThan(0.002);
    expect(Math.abs((header?.audio?.durationSec ?? 0) - (probed.audio?.durationSec ?? 0))).toBeLessThan(
      0.002,
    );
    expect(header?.audio).toMatchObject({ sampleRate: 16_000, channels: probed.audio?.channels });
  });

  it.each(["a.wav", "a.m4a", "a.mp3"])(
    "measures %s from content held in memory as from its file, without reading the file",
    async (name) => {
      const path = await tone(name);
      const content = await readFile(path);
      const fromFile = await readAudioHeader(path);
      expect(fromFile).toBeDefined();
      // The path names nothing: only the content can have been read.
      expect(await readAudioHeader(join(dir, "not-there"), content)).toEqual(fromFile);
      await expect(stat(join(dir, "not-there"))).rejects.toThrow();
    },
  );

  it("hands held content that is not audio to ffprobe", async () => {
    const text = join(dir, "notes.wav");
    await makeNotMedia(text);
    expect(await readAudioHeader(text, await readFile(text))).toBeUndefined();
  });

  it("leaves the temp file's name out of it: content decides, not the extension", async () => {
    const path = await tone("a.wav");
    const renamed = join(dir, "upload-without-extension");
    await runFfmpeg(["-v", "error", "-i", path, "-c", "copy", "-f", "wav", renamed]);
    expect((await readAudioHeader(renamed))?.formatName).toBe("wav");
  });

  it.each([
    ["ADTS AAC, whose duration only a full scan can tell", "a.aac", "aac"],
    ["WAV holding µ-law", "a.wav", "pcm_mulaw"],
  ])("hands %s to ffprobe", async (_what, name, codec) => {
    const path = await tone(name, codec);
    expect(await readAudioHeader(path)).toBeUndefined();
    expect((await probeMedia(path)).audio).toBeDefined();
  });

  it("hands video, text and empty files to ffprobe", async () => {
    const video = join(dir, "v.mp4");
    await makeVideo(video, { seconds: 1, width: 64, height: 64, withAudio: true });
    const text = join(dir, "notes.wav");
    await makeNotMedia(text);
    const empty = join(dir, "empty.wav");
    await makeNotMedia(empty);
    await truncate(empty, 0);
    expect(await readAudioHeader(video)).toBeUndefined();
    expect(await readAudioHeader(text)).toBeUndefined();
    expect(await readAudioHeader(empty)).toBeUndefined();
  });

  it("hands files over 16 MB to ffprobe, so its memory stays bounded", async () => {
    const path = join(dir, "long.wav");
    // 16 kHz mono s16: 32 kB/s, so 9 minutes is about 17 MB.
    await makeAudio(path, { seconds: 540, sampleRate: 16_000 });
    expect(await readAudioHeader(path)).toBeUndefined();
  });
});
