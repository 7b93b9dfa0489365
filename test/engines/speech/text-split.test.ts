import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { splitText } from "../../../src/engines/speech/text-split.js";
import { durationSeconds, encodeWav, joinWavs, parseWav } from "../../../src/engines/speech/wav.js";
import { makeAudio, probe } from "../../helpers/media.js";

function tone(seconds: number, rate: number): Buffer {
  const samples = Buffer.alloc(Math.round(seconds * rate) * 2);
  for (let i = 0; i < samples.length / 2; i++)
    samples.writeInt16LE(Math.round(6000 * Math.sin(i / 7)), i * 2);
  return encodeWav({ format: { channels: 1, sampleRate: rate, bitsPerSample: 16 }, samples });
}

describe("splitting text for the voice service", () => {
  it("cuts at sentence ends, Chinese and Latin, and keeps parts under the limit", () => {
    expect(splitText("你好。今天天气很好！你呢？", 8)).toEqual(["你好。", "今天天气很好！", "你呢？"]);
    expect(splitText("Hello there. Pi is 3.14 today! Bye", 20)).toEqual([
      "Hello there.",
      "Pi is 3.14 today!",
      "Bye",
    ]);
    expect(splitText("一。二。三。", 100)).toEqual(["一。二。三。"]);
  });

  it("drops parts with nothing to say, so punctuation alone is unspeakable", () => {
    expect(splitText("。。。！？  ", 10)).toEqual([]);
    expect(splitText("", 10)).toEqual([]);
  });

  it("never exceeds the limit and loses no letter (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom("你", "好", "a", " ", "。", "，", ".", "!", "b") }),
        fc.integer({ min: 1, max: 30 }),
        (text, max) => {
          const parts = splitText(text, max);
          for (const part of parts) expect([...part].length).toBeLessThanOrEqual(max);
          const letters = (s: string) => s.replace(/[^\p{L}\p{N}]/gu, "");
          expect(letters(parts.join(""))).toBe(letters(text));
        },
      ),
    );
  });
});

describe("joining the parts' audio", () => {
  it("gives a WAV as long as its parts together, sample for sample, with no gap", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mh-join-"));
    try {
      const parts = [tone(0.5, 16_000), tone(0.25, 16_000), tone(1.125, 16_000)];
      const joined = await joinWavs(parts, { workDir: dir });
      const audio = parseWav(joined);
      expect(durationSeconds(audio)).toBeCloseTo(1.875, 3);
      const concatenated = Buffer.concat(parts.map((p) => parseWav(p).samples));
      expect(audio.samples.equals(concatenated)).toBe(true);
      await writeFile(join(dir, "joined.wav"), joined);
      expect((await probe(join(dir, "joined.wav"))).durationSec).toBeCloseTo(1.875, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("decodes a part in another format to the first part's rate first", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mh-join-"));
    try {
      await makeAudio(join(dir, "other.mp3"), { seconds: 1, sampleRate: 44_100 });
      const { readFile } = await import("node:fs/promises");
      const joined = parseWav(
        await joinWavs([tone(0.5, 16_000), await readFile(join(dir, "other.mp3"))], { workDir: dir }),
      );
      expect(joined.format.sampleRate).toBe(16_000);
      // An MP3 carries encoder padding, so its length is near, not exact.
      expect(durationSeconds(joined)).toBeGreaterThan(1.45);
      expect(durationSeconds(joined)).toBeLessThan(1.6);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
