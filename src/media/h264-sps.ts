import { BoxError } from "./mp4-boxes.js";

/** What an H.264 sequence parameter set says about the pictures, as ffmpeg's decoder reads it. */
export interface H264Pictures {
  /** After the SPS's cropping: the size ffprobe reports. */
  readonly width: number;
  readonly height: number;
  /** 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4. */
  readonly chromaFormat: number;
  readonly bitDepthLuma: number;
  readonly bitDepthChroma: number;
  /** The VUI's video_full_range_flag, when the VUI states a signal type. */
  readonly fullRange?: boolean;
  /** Whether the SPS crops at the left or top (ffmpeg may shift those to keep alignment). */
  readonly cropsLeftOrTop: boolean;
}

/** Profiles whose SPS carries chroma format, bit depths and scaling matrices (H.264 7.3.2.1.1). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/**
 * Reads an SPS NAL unit (its one-byte NAL header first) up to the VUI's signal type: every field
 * before it has to be walked, since Exp-Golomb codes have no fixed place. Throws BoxError on
 * anything malformed, so an odd file goes to ffprobe.
 */
export function readSps(nal: Buffer): H264Pictures {
  if (nal.length < 4 || (nal[0] ?? 0) & 0x80 || ((nal[0] ?? 0) & 0x1f) !== 7)
    throw new BoxError("not an SPS NAL unit");
  const bits = new Bits(rbsp(nal.subarray(1)));
  const profile = bits.u(8);
  bits.u(16); // constraint flags, level
  bits.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  let separateColourPlanes = false;
  let bitDepthLuma = 8;
  let bitDepthChroma = 8;
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = bits.ue();
    if (chromaFormat > 3) throw new BoxError("chroma format out of range");
    if (chromaFormat === 3) separateColourPlanes = bits.u(1) === 1;
    bitDepthLuma = bits.ue() + 8;
    bitDepthChroma = bits.ue() + 8;
    if (bitDepthLuma > 14 || bitDepthChroma > 14) throw new BoxError("bit depth out of range");
    bits.u(1); // qpprime_y_zero_transform_bypass_flag
    if (bits.u(1) === 1) {
      const lists = chromaFormat === 3 ? 12 : 8;
      for (let i = 0; i < lists; i++) if (bits.u(1) === 1) skipScalingList(bits, i < 6 ? 16 : 64);
    }
  }
  bits.ue(); // log2_max_frame_num_minus4
  const pocType = bits.ue();
  if (pocType === 0) bits.ue();
  else if (pocType === 1) {
    bits.u(1);
    bits.se();
    bits.se();
    const cycle = bits.ue();
    if (cycle > 255) throw new BoxError("picture order cycle out of range");
    for (let i = 0; i < cycle; i++) bits.se();
  } else if (pocType !== 2) throw new BoxError("picture order count type out of range");
  bits.ue(); // max_num_ref_frames
  bits.u(1); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = bits.ue() + 1;
  const heightMapUnits = bits.ue() + 1;
  const frameMbsOnly = bits.u(1);
  if (frameMbsOnly === 0) bits.u(1); // mb_adaptive_frame_field_flag
  bits.u(1); // direct_8x8_inference_flag
  let crop = { left: 0, right: 0, top: 0, bottom: 0 };
  if (bits.u(1) === 1) crop = { left: bits.ue(), right: bits.ue(), top: bits.ue(), bottom: bits.ue() };
  let fullRange: boolean | undefined;
  if (bits.u(1) === 1) fullRange = signalRange(bits);

  // Table 6-1: chroma samples per luma sample across and down; cropping counts in chroma units.
  const chromaArrayType = separateColourPlanes ? 0 : chromaFormat;
  const cropX = chromaArrayType === 0 ? 1 : chromaArrayType === 3 ? 1 : 2;
  const cropY = (chromaArrayType === 1 ? 2 : 1) * (2 - frameMbsOnly);
  const width = widthMbs * 16 - cropX * (crop.left + crop.right);
  const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropY * (crop.top + crop.bottom);
  if (!(width > 0 && height > 0)) throw new BoxError("cropped away the whole picture");
  return {
    width,
    height,
    chromaFormat,
    bitDepthLuma,
    bitDepthChroma,
    ...(fullRange === undefined ? {} : { fullRange }),
    cropsLeftOrTop: crop.left > 0 || crop.top > 0,
  };
}

/** The VUI up to its video_full_range_flag (E.1.1); undefined when it states no signal type. */
function signalRange(bits: Bits): boolean | undefined {
  if (bits.u(1) === 1) {
    // aspect_ratio_info_present_flag: 255 is Extended_SAR, two 16-bit numbers.
    if (bits.u(8) === 255) bits.u(32);
  }
  if (bits.u(1) === 1) bits.u(1); // overscan
  if (bits.u(1) === 0) return undefined; // video_signal_type_present_flag
  bits.u(3); // video_format
  return bits.u(1) === 1;
}

function skipScalingList(bits: Bits, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) {
      const delta = bits.se();
      if (delta < -128 || delta > 127) throw new BoxError("scaling list delta out of range");
      next = (last + delta + 256) % 256;
    }
    last = next === 0 ? last : next;
  }
}

/** The RBSP: a NAL's payload with its emulation prevention bytes (00 00 03) taken out. */
function rbsp(payload: Buffer): Buffer {
  const out = Buffer.alloc(payload.length);
  let n = 0;
  let zeros = 0;
  for (const byte of payload) {
    if (zeros >= 2 && byte === 3) {
      zeros = 0;
      continue;
    }
    out[n++] = byte;
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  return out.subarray(0, n);
}

/** A big-endian bit reader with H.264's Exp-Golomb codes; reading past the end throws BoxError. */
class Bits {
  private at = 0;

  constructor(private readonly buf: Buffer) {}

  u(n: number): number {
    let value = 0;
    for (let i = 0; i < n; i++) value = value * 2 + this.bit();
    return value;
  }

  /** ue(v): up to 31 leading zeros, as every field read here fits in 32 bits. */
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (++zeros > 31) throw new BoxError("Exp-Golomb code too long");
    }
    return 2 ** zeros - 1 + this.u(zeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }

  private bit(): number {
    const byte = this.buf[this.at >> 3];
    if (byte === undefined) throw new BoxError("SPS ends early");
    const bit = (byte >> (7 - (this.at & 7))) & 1;
    this.at++;
    return bit;
  }
}
