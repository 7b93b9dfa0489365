import { describe, expect, it } from "vitest";
import { readSps } from "../../src/media/h264-sps.js";
import { BoxError } from "../../src/media/mp4-boxes.js";

/** Writes an SPS bit by bit (H.264 7.3.2.1.1), as an encoder would: Exp-Golomb codes and all. */
class SpsWriter {
  private readonly bits: number[] = [];

  u(n: number, value: number): this {
    for (let i = n - 1; i >= 0; i--) this.bits.push(Math.floor(value / 2 ** i) % 2);
    return this;
  }

  ue(value: number): this {
    const code = value + 1;
    const length = Math.floor(Math.log2(code));
    return this.u(length, 0).u(length + 1, code);
  }

  se(value: number): this {
    return this.ue(value > 0 ? 2 * value - 1 : -2 * value);
  }

  /** The NAL unit: its header (an SPS), then the bytes with the stop bit, escaped as encoders do. */
  nal(): Buffer {
    const bits = [...this.bits, 1];
    while (bits.length % 8 !== 0) bits.push(0);
    const raw: number[] = [];
    for (let i = 0; i < bits.length; i += 8) raw.push(bits.slice(i, i + 8).reduce((a, b) => a * 2 + b, 0));
    const out = [0x67];
    let zeros = 0;
    for (const byte of raw) {
      if (zeros >= 2 && byte <= 3) {
        out.push(3);
        zeros = 0;
      }
      out.push(byte);
      zeros = byte === 0 ? zeros + 1 : 0;
    }
    return Buffer.from(out);
  }
}

/** A High-profile SPS up to its VUI; each option changes one thing a reader has to walk past. */
function highSps(o: {
  widthMbs: number;
  heightMbs: number;
  chroma?: number;
  scalingLists?: boolean;
  pocType?: number;
  crop?: [number, number, number, number];
  fullRange?: boolean;
}): Buffer {
  const w = new SpsWriter().u(8, 100).u(8, 0).u(8, 40).ue(0);
  w.ue(o.chroma ?? 1)
    .ue(0)
    .ue(0)
    .u(1, 0);
  if (o.scalingLists) {
    w.u(1, 1);
    // Eight lists: the first two sent (deltas that wrap past 255 and back), the rest not.
    for (let i = 0; i < 8; i++) {
      const sent = i < 2;
      w.u(1, sent ? 1 : 0);
      if (sent) for (let j = 0; j < (i < 6 ? 16 : 64); j++) w.se(j % 2 === 0 ? 120 : -121);
    }
  } else w.u(1, 0);
  w.ue(0); // log2_max_frame_num_minus4
  const pocType = o.pocType ?? 0;
  w.ue(pocType);
  if (pocType === 0) w.ue(2);
  else if (pocType === 1) w.u(1, 0).se(-3).se(5).ue(3).se(1).se(-2).se(7);
  w.ue(4)
    .u(1, 0)
    .ue(o.widthMbs - 1)
    .ue(o.heightMbs - 1)
    .u(1, 1)
    .u(1, 1);
  if (o.crop) w.u(1, 1).ue(o.crop[0]).ue(o.crop[1]).ue(o.crop[2]).ue(o.crop[3]);
  else w.u(1, 0);
  if (o.fullRange === undefined) return w.u(1, 0).nal();
  // VUI: an extended sample aspect ratio, no overscan info, then the signal type.
  return w
    .u(1, 1)
    .u(1, 1)
    .u(8, 255)
    .u(16, 4)
    .u(16, 3)
    .u(1, 0)
    .u(1, 1)
    .u(3, 5)
    .u(1, o.fullRange ? 1 : 0)
    .u(1, 0)
    .nal();
}

describe("readSps", () => {
  it("walks past scaling lists to the picture size", () => {
    expect(readSps(highSps({ widthMbs: 20, heightMbs: 15, scalingLists: true }))).toMatchObject({
      width: 320,
      height: 240,
      chromaFormat: 1,
      bitDepthLuma: 8,
    });
  });

  it("walks past a type-1 picture order cycle", () => {
    expect(readSps(highSps({ widthMbs: 4, heightMbs: 3, pocType: 1 }))).toMatchObject({
      width: 64,
      height: 48,
    });
  });

  it("crops in chroma units: two luma samples across and down at 4:2:0, one down at 4:2:2", () => {
    const crop: [number, number, number, number] = [0, 3, 0, 4];
    expect(readSps(highSps({ widthMbs: 120, heightMbs: 68, crop }))).toMatchObject({
      width: 1914,
      height: 1080,
      cropsLeftOrTop: false,
    });
    expect(readSps(highSps({ widthMbs: 120, heightMbs: 68, crop, chroma: 2 }))).toMatchObject({
      width: 1914,
      height: 1084,
    });
    expect(readSps(highSps({ widthMbs: 4, heightMbs: 4, crop: [1, 0, 0, 0] })).cropsLeftOrTop).toBe(true);
  });

  it("reads the VUI's range past an extended aspect ratio", () => {
    expect(readSps(highSps({ widthMbs: 4, heightMbs: 4, fullRange: true })).fullRange).toBe(true);
    expect(readSps(highSps({ widthMbs: 4, heightMbs: 4, fullRange: false })).fullRange).toBe(false);
    expect(readSps(highSps({ widthMbs: 4, heightMbs: 4 })).fullRange).toBeUndefined();
  });

  it("takes out emulation prevention bytes before reading", () => {
    // ue(65535) ends in 16 zero bits, and the next one starts with 16: a run an encoder escapes.
    const nal = highSps({ widthMbs: 65_536, heightMbs: 65_536 });
    expect(nal.includes(Buffer.from([0, 0, 3]))).toBe(true);
    expect(readSps(nal)).toMatchObject({ width: 1_048_576, height: 1_048_576 });
  });

  it("refuses what is not an SPS, or ends early, as a BoxError", () => {
    const sps = highSps({ widthMbs: 20, heightMbs: 15, scalingLists: true });
    expect(() => readSps(Buffer.from([0x68, 0xee, 0x3c, 0x80]))).toThrow(BoxError);
    expect(() => readSps(sps.subarray(0, 12))).toThrow(BoxError);
    // A cropping that leaves nothing of the picture.
    expect(() => readSps(highSps({ widthMbs: 1, heightMbs: 1, crop: [0, 8, 0, 0] }))).toThrow(BoxError);
  });
});
