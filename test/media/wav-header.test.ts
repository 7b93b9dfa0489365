import { mkdtemp, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { parseBuffer } from "music-metadata";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probeMedia } from "../../src/media/probe.js";
import { readWav } from "../../src/media/wav-header.js";
import { makeAudio } from "../helpers/media.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wav-header-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A tone as a WAV of this sample format, rate and channel count, written by ffmpeg. */
async function wav(
  name: string,
  codec: string,
  rate: number,
  channels: number,
  seconds = 1.3,
): Promise<string> {
  const path = join(dir, name);
  await makeAudio(path, { seconds, sampleRate: rate, codec, channels });
  return path;
}

/** What music-metadata, which read every WAV before, makes of the file. */
async function parsed(bytes: Buffer) {
  const { format } = await parseBuffer(bytes, { size: bytes.length }, { duration: false });
  return { duration: format.duration, sampleRate: format.sampleRate, channels: format.numberOfChannels };
}

describe("readWav", () => {
  it.each([
    ["16-bit mono at 16 kHz", "pcm_s16le", 16_000, 1],
    ["16-bit stereo at 44.1 kHz", "pcm_s16le", 44_100, 2],
    ["8-bit mono at 8 kHz", "pcm_u8", 8_000, 1],
    ["16-bit mono at 22.05 kHz", "pcm_s16le", 22_050, 1],
  ])("reads %s as the parser and ffprobe do", async (what, codec, rate, channels) => {
    const path = await wav(`${what.replaceAll(" ", "-")}.wav`, codec, rate, channels);
    const bytes = await readFile(path);
    const facts = readWav(bytes, bytes.length);
    const theirs = await parsed(bytes);
    const probed = await probeMedia(path);
    expect(facts).toEqual({
      durationSec: theirs.duration,
      formatName: "wav",
      audio: { index: 0, codec: "pcm", sampleRate: rate, channels, durationSec: theirs.duration },
    });
    expect(theirs).toMatchObject({ sampleRate: rate, channels });
    expect(probed.audio).toMatchObject({ sampleRate: rate, channels });
    expect(Math.abs((facts?.durationSec ?? 0) - probed.durationSec)).toBeLessThan(0.001);
  });

  it("reads the first 64 KiB of a long file as the whole of it", async () => {
    const path = await wav("long.wav", "pcm_s16le", 16_000, 1, 40);
    const bytes = await readFile(path);
    expect(readWav(bytes.subarray(0, 64 * 1024), bytes.length)).toEqual(readWav(bytes, bytes.length));
    expect(readWav(bytes, bytes.length)?.durationSec).toBeCloseTo(40, 3);
  });

  it("counts only the samples in the file when its data chunk claims more, as the parser does", async () => {
    const path = await wav("cut.wav", "pcm_s16le", 16_000, 1, 2);
    await truncate(path, 16_000 * 2 + 100);
    const bytes = await readFile(path);
    const facts = readWav(bytes, bytes.length);
    expect(facts?.durationSec).toBe((await parsed(bytes)).duration);
    expect(facts?.durationSec).toBeLessThan(1.01);
  });

  it.each([
    // ffmpeg writes WAVE_FORMAT_EXTENSIBLE for more than 16 bits or 2 channels, and a fact chunk
    // for float: the parser (or ffprobe) reads those.
    ["24-bit samples", "pcm_s24le", 48_000, 2],
    ["six channels", "pcm_s16le", 48_000, 6],
    ["float samples", "pcm_f32le", 48_000, 1],
    ["µ-law", "pcm_mulaw", 8_000, 1],
  ])("leaves %s to the parser", async (what, codec, rate, channels) => {
    const path = await wav(`${what.replaceAll(" ", "-")}.wav`, codec, rate, channels);
    const bytes = await readFile(path);
    expect(readWav(bytes, bytes.length)).toBeUndefined();
  });

  it("answers undefined for what is not a WAV, and never throws on damaged headers", async () => {
    const good = await readFile(await wav("fuzz.wav", "pcm_s16le", 16_000, 1, 0.2));
    expect(readWav(Buffer.from("RIFF"), 4)).toBeUndefined();
    expect(readWav(Buffer.from("not a wav file at all"), 21)).toBeUndefined();
    fc.assert(
      fc.property(
        fc.nat({ max: 120 }),
        fc.uint8Array({ minLength: 1, maxLength: 8 }),
        fc.nat({ max: good.length }),
        (at, bytes, cut) => {
          // Bytes overwritten anywhere in the headers, and the file cut anywhere.
          const damaged = Buffer.from(good);
          damaged.set(bytes.subarray(0, Math.max(0, damaged.length - at)), at);
          const head = damaged.subarray(0, cut);
          const facts = readWav(head, cut);
          if (facts === undefined) return;
          expect(facts.durationSec).toBeGreaterThan(0);
          expect(Number.isFinite(facts.durationSec)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
