import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MediaInfo, probeMedia } from "../../src/media/probe.js";
import { readVideoHeader } from "../../src/media/video-header.js";
import { makeNoisyVideo, makeNotMedia, makeVideo, topLevelBoxes } from "../helpers/media.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "video-header-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Clip {
  width?: number;
  height?: number;
  fps?: string;
  seconds?: number;
  /** Output options after the defaults (codecs, pixel format, container flags). */
  out?: string[];
  /** A tone as the second input, with these options for it. */
  sound?: string[];
}

/** A short clip of ffmpeg's test pattern, made by the ffmpeg under test. */
async function clip(name: string, c: Clip = {}): Promise<string> {
  const path = join(dir, name);
  await makeVideo(path, {
    seconds: c.seconds ?? 2,
    width: c.width ?? 96,
    height: c.height ?? 64,
    fps: c.fps ?? 25,
    ...(c.sound ? { audioArgs: c.sound } : {}),
    ...(c.out ? { extraArgs: c.out } : {}),
  });
  return path;
}

/** What ffprobe says, to the microsecond ffprobe prints durations in. */
function expectAlike(header: MediaInfo | undefined, probed: MediaInfo): void {
  expect(header).toBeDefined();
  if (!header) return;
  expect(header.formatName).toBe(probed.formatName);
  expect(header.durationSec).toBeCloseTo(probed.durationSec, 5);
  const { durationSec: videoSec, ...video } = header.video ?? { durationSec: undefined };
  const { durationSec: probedVideoSec, ...probedVideo } = probed.video ?? { durationSec: undefined };
  expect(video).toEqual(probedVideo);
  expect(videoSec).toBeCloseTo(probedVideoSec ?? 0, 5);
  if (probed.audio) {
    const { durationSec: audioSec, ...audio } = header.audio ?? { durationSec: undefined };
    const { durationSec: probedAudioSec, ...probedAudio } = probed.audio;
    expect(audio).toEqual(probedAudio);
    expect(audioSec).toBeCloseTo(probedAudioSec ?? 0, 5);
  } else {
    expect(header.audio).toBeUndefined();
  }
}

describe("readVideoHeader", () => {
  it.each<[string, string, Clip]>([
    ["an H.264 MP4 with its index at the end", "plain.mp4", {}],
    ["one with AAC sound", "sound.mp4", { sound: ["-c:a", "aac"] }],
    ["stereo sound at 48 kHz", "stereo.mp4", { sound: ["-c:a", "aac", "-ac", "2", "-ar", "48000"] }],
    ["an NTSC frame rate", "ntsc.mp4", { fps: "30000/1001", seconds: 3 }],
    // Pictures out of order: the edit list starts past the reorder delay.
    ["B-frames", "bframes.mp4", { out: ["-preset", "medium", "-bf", "3"], sound: ["-c:a", "aac"] }],
    ["full-range pictures", "full.mp4", { out: ["-pix_fmt", "yuvj420p"] }],
    ["4:2:2 pictures", "422.mp4", { out: ["-pix_fmt", "yuv422p"] }],
    // Field coding: the SPS counts the height in field pairs.
    ["interlaced pictures", "fields.mp4", { width: 96, height: 72, out: ["-x264-params", "interlaced=1"] }],
    ["a size that is not whole macroblocks", "crop.mp4", { width: 98, height: 66 }],
    ["its index first", "faststart.mp4", { out: ["-movflags", "+faststart"] }],
    ["a QuickTime MOV with sound", "clip.mov", { sound: ["-c:a", "aac"], out: ["-f", "mov"] }],
  ])("measures %s in process, as ffprobe does", async (_what, name, c) => {
    const path = await clip(name, c);
    expectAlike(await readVideoHeader(path), await probeMedia(path));
  });

  it("reads an index that follows megabytes of pictures, as ffprobe does", async () => {
    const path = join(dir, "noisy.mp4");
    await makeNoisyVideo(path, { seconds: 1 });
    expect((await stat(path)).size).toBeGreaterThan(1024 * 1024);
    expect(await topLevelBoxes(path)).toEqual(["ftyp", "free", "mdat", "moov"]);
    expectAlike(await readVideoHeader(path), await probeMedia(path));
  });

  it.each<[string, string, Clip]>([
    ["another video codec", "mpeg4.mp4", { out: ["-c:v", "mpeg4"] }],
    ["4:4:4 pictures", "444.mp4", { out: ["-pix_fmt", "yuv444p"] }],
    ["a fragmented MP4", "frag.mp4", { out: ["-movflags", "frag_keyframe+empty_moov"] }],
    ["Matroska", "clip.mkv", {}],
  ])("hands %s to ffprobe", async (_what, name, c) => {
    const path = await clip(name, c);
    expect(await readVideoHeader(path)).toBeUndefined();
    expect((await probeMedia(path)).video).toBeDefined();
  });

  it("reads AAC below 24 kHz only where its config rules SBR out, else hands it to ffprobe", async () => {
    const path = await clip("sbr.mp4", { sound: ["-c:a", "aac", "-ar", "22050"] });
    const original = await readFile(path);
    // The AudioSpecificConfig, after its descriptor's tag (5) and a length in four bytes.
    const length = original.indexOf(Buffer.from([0x05, 0x80, 0x80, 0x80])) + 4;
    expect(length).toBeGreaterThan(4);
    expect(original.readUInt16BE(length + 1) >> 11).toBe(2); // AAC-LC
    if (original[length] === 2) {
      // An encoder that writes no SBR signal (the 2018 static build): a decoder may find SBR.
      expect(await readVideoHeader(path)).toBeUndefined();
      return;
    }
    // ffmpeg's encoder now writes the sync extension that rules SBR out: the rate is final.
    expect(original[length]).toBe(5);
    expectAlike(await readVideoHeader(path), await probeMedia(path));
    // The extension says SBR is there (sbrPresentFlag set): the rate may double.
    const present = Buffer.from(original);
    present[length + 5] = 0x80;
    await writeFile(path, present);
    expect(await readVideoHeader(path)).toBeUndefined();
    // No extension (the config cut to its first two bytes): a decoder may find SBR.
    const implicit = Buffer.from(original);
    implicit[length] = 2;
    await writeFile(path, implicit);
    expect(await readVideoHeader(path)).toBeUndefined();
  });

  it("hands a cut-off upload, text and empty files to ffprobe", async () => {
    const cut = await clip("cut.mp4");
    await truncate(cut, Math.floor((await stat(cut)).size / 2));
    const text = join(dir, "notes.mp4");
    await makeNotMedia(text);
    const empty = join(dir, "empty.mp4");
    await writeFile(empty, "");
    expect(await readVideoHeader(cut)).toBeUndefined();
    expect(await readVideoHeader(text)).toBeUndefined();
    expect(await readVideoHeader(empty)).toBeUndefined();
  });

  it("never throws on a corrupted index: each byte of `moov` flipped in turn", async () => {
    const path = join(dir, "small.mp4");
    await makeVideo(path, { seconds: 1, width: 32, height: 32, withAudio: true });
    const original = await readFile(path);
    const moov = original.indexOf("moov", 0, "latin1") - 4;
    expect(moov).toBeGreaterThan(0);
    const bad = join(dir, "bad.mp4");
    const end = Math.min(original.length, moov + original.readUInt32BE(moov));
    // Every byte of the index, so every size, count and field is lied about once.
    for (let at = moov; at < end; at++) {
      const copy = Buffer.from(original);
      copy[at] = (copy[at] ?? 0) ^ 0xff;
      await writeFile(bad, copy);
      const read = await readVideoHeader(bad);
      // A lie that still adds up is read as ffprobe would read it; anything else is ffprobe's.
      if (read) {
        expect(read.video?.width).toBeGreaterThan(0);
        expect(read.video?.height).toBeGreaterThan(0);
        expect(read.durationSec).toBeGreaterThanOrEqual(0);
      }
    }
  });
});
