import { open } from "node:fs/promises";
import { readSps } from "./h264-sps.js";
import { type Box, BoxError, boxes, child, descend, fullBox, readMoov } from "./mp4-boxes.js";
import type { AudioInfo, MediaInfo, VideoInfo } from "./probe.js";

/**
 * A `moov` larger than this goes to ffprobe. An hour of 30 fps video indexes 108 000 samples in
 * about 1.3 MB; the bound keeps the memory of one reading small whatever a client sends.
 */
export const MAX_MOOV_BYTES = 8 * 1024 * 1024;

/** ffprobe's name for the mov demuxer's family, so facts read either way look alike. */
const MOV_FORMAT_NAME = "mov,mp4,m4a,3gp,3g2,mj2";

/** ffmpeg reduces a frame rate to a fraction whose parts fit in a signed 32-bit int. */
const INT_MAX = 2n ** 31n - 1n;

/**
 * Measures the commonest template, an H.264 MP4 or MOV (with or without AAC sound), from its
 * `moov` box in process: a few reads and well under a millisecond of parsing, where one ffprobe
 * run costs 12–200 ms depending on the build (a Debian build links 215 libraries). That run was
 * most of what the gateway added to a new template's task once its upload ended (issue 14).
 *
 * Every fact is the one ffprobe reports, read the way ffmpeg reads it: the size and pixel format
 * from the SPS, the frame count and average frame rate from the time-to-sample table (`stts`, as
 * the mov demuxer computes them), each stream's duration from its edit list (which leaves out
 * the encoder's priming samples) or its samples, the file's as the longest stream's, the stream
 * index from the track's place in `moov`.
 * Anything this reader cannot read exactly answers `undefined`, and ffprobe judges the file:
 * another codec or container, a fragmented file, several sample descriptions, 10-bit or 4:4:4 or
 * monochrome pictures, cropping at the left or top, AAC whose rate a decoder may double (SBR),
 * anything malformed.
 */
export async function readVideoHeader(path: string): Promise<MediaInfo | undefined> {
  try {
    const file = await open(path, "r");
    try {
      const moov = await readMoov(file, (await file.stat()).size, MAX_MOOV_BYTES);
      return moov && readMovie(moov, "video");
    } finally {
      await file.close();
    }
  } catch {
    // A malformed box (BoxError), or a file that cannot be read: ffprobe's to report, in its words.
    return undefined;
  }
}

/**
 * An audio-only MP4 (M4A) from its `moov` payload, read as a template's sound track is: AAC-LC
 * with its duration from the edit list, as ffprobe reports it. `undefined` for a file with a
 * picture track, or anything this reader cannot read exactly (audio-header.ts then asks its
 * parser, or ffprobe).
 */
export function readAudioMovie(moov: Buffer): MediaInfo | undefined {
  try {
    return readMovie(moov, "audio");
  } catch {
    return undefined;
  }
}

/** `buf`: the payload of `moov`; `want`: the track the file must have (a picture, or sound alone). */
function readMovie(buf: Buffer, want: "video" | "audio"): MediaInfo | undefined {
  const moov: Box = { type: "moov", start: 0, end: buf.length };
  const mvhd = child(buf, moov, "mvhd");
  if (!mvhd || child(buf, moov, "mvex")) return undefined;
  const movie = timing(buf, mvhd);
  if (!movie) return undefined;
  let video: VideoInfo | undefined;
  let audio: AudioInfo | undefined;
  let index = 0;
  for (const trak of boxes(buf, moov.start, moov.end)) {
    if (trak.type !== "trak") continue;
    const handler = handlerOf(buf, trak);
    // One picture track and at most one sound track: a timecode, text or second track has
    // durations and roles of its own that only ffprobe weighs.
    if (handler === "vide" && !video && want === "video") {
      video = readVideoTrack(buf, trak, index, movie.timescale);
      if (!video) return undefined;
    } else if (handler === "soun" && !audio) {
      audio = readAudioTrack(buf, trak, index, movie.timescale);
      if (!audio) return undefined;
    } else return undefined;
    index++;
  }
  if (want === "video" ? !video : !audio) return undefined;
  return {
    // As ffmpeg has it: the end of the longest stream, in microseconds.
    durationSec: Math.round(Math.max(video?.durationSec ?? 0, audio?.durationSec ?? 0) * 1e6) / 1e6,
    formatName: MOV_FORMAT_NAME,
    ...(video ? { video } : {}),
    ...(audio ? { audio } : {}),
  };
}

/**
 * A track's presented duration, as ffmpeg gives it: its edit list's one edit (in the movie's
 * time scale), else its samples' total (in its own). An edit list of several edits (cuts, a
 * delayed start) or a slowed one is ffprobe's to weigh: `undefined`.
 */
function presented(buf: Buffer, trak: Box, movieScale: number, samples: number): number | undefined {
  const elst = descend(buf, trak, ["edts", "elst"]);
  if (!elst) return samples;
  // Version 1 has 64-bit times: the edit is 20 bytes, else 12.
  const wide = fullBox(buf, elst, 4) === 1;
  if (buf.readUInt32BE(elst.start + 4) !== 1) return undefined;
  fullBox(buf, elst, 4 + (wide ? 20 : 12));
  const at = elst.start + 8;
  const segment = wide ? Number(buf.readBigUInt64BE(at)) : buf.readUInt32BE(at);
  const mediaTime = wide ? Number(buf.readBigInt64BE(at + 8)) : buf.readInt32BE(at + 4);
  const rate = buf.readUInt32BE(at + (wide ? 16 : 8));
  return segment > 0 && mediaTime >= 0 && rate === 0x10000 ? segment / movieScale : undefined;
}

function handlerOf(buf: Buffer, trak: Box): string | undefined {
  const hdlr = descend(buf, trak, ["mdia", "hdlr"]);
  if (!hdlr) return undefined;
  fullBox(buf, hdlr, 8);
  return buf.toString("latin1", hdlr.start + 8, hdlr.start + 12);
}

/** `mvhd` or `mdhd`: the same layout up to the duration. */
function timing(buf: Buffer, box: Box): { timescale: number; duration: number } | undefined {
  const version = fullBox(buf, box, 20);
  let timescale: number;
  let duration: number;
  if (version === 1) {
    fullBox(buf, box, 28);
    timescale = buf.readUInt32BE(box.start + 4 + 16);
    duration = Number(buf.readBigUInt64BE(box.start + 4 + 20));
  } else {
    timescale = buf.readUInt32BE(box.start + 4 + 8);
    duration = buf.readUInt32BE(box.start + 4 + 12);
  }
  if (!(timescale > 0 && duration > 0 && Number.isSafeInteger(duration))) return undefined;
  return { timescale, duration };
}

interface SampleTable {
  readonly timescale: number;
  readonly duration: number;
  /** The first (and only) sample description. */
  readonly entry: Box;
  readonly stbl: Box;
}

function sampleTable(buf: Buffer, trak: Box): SampleTable | undefined {
  const mdhd = descend(buf, trak, ["mdia", "mdhd"]);
  const stbl = descend(buf, trak, ["mdia", "minf", "stbl"]);
  const stsd = stbl && child(buf, stbl, "stsd");
  const media = mdhd && timing(buf, mdhd);
  if (!stbl || !stsd || !media) return undefined;
  fullBox(buf, stsd, 4);
  // Several descriptions make ffmpeg switch codecs mid-stream: not for this reader.
  if (buf.readUInt32BE(stsd.start + 4) !== 1) return undefined;
  const [entry] = boxes(buf, stsd.start + 8, stsd.end);
  if (!entry) return undefined;
  return { ...media, entry, stbl };
}

/** A sample entry's own fields, then its child boxes (ISO 14496-12 8.5.2, after the 8-byte base). */
const VISUAL_ENTRY_BYTES = 8 + 70;

function readVideoTrack(buf: Buffer, trak: Box, index: number, movieScale: number): VideoInfo | undefined {
  const table = sampleTable(buf, trak);
  if (!table) return undefined;
  const { entry } = table;
  if (entry.type !== "avc1" && entry.type !== "avc3") return undefined;
  if (entry.end - entry.start < VISUAL_ENTRY_BYTES) return undefined;
  const avcC = boxWithin(buf, entry, VISUAL_ENTRY_BYTES, "avcC");
  const sps = avcC && firstSps(buf, avcC);
  if (!sps) return undefined;
  const pictures = readSps(sps);
  // The sizes ffmpeg's decoder would give; a description that disagrees is ffprobe's to settle.
  const entryWidth = buf.readUInt16BE(entry.start + 24);
  const entryHeight = buf.readUInt16BE(entry.start + 26);
  if (pictures.width !== entryWidth || pictures.height !== entryHeight || pictures.cropsLeftOrTop)
    return undefined;
  const range = signalRange(pictures.fullRange, colourRange(buf, entry));
  if (range === "disagree") return undefined;
  const pixFmt = pixelFormat(pictures.chromaFormat, pictures.bitDepthLuma, pictures.bitDepthChroma, range);
  if (!pixFmt) return undefined;
  const samples = timeToSample(buf, table);
  const durationSec = samples && presented(buf, trak, movieScale, samples.duration / table.timescale);
  if (!samples || durationSec === undefined) return undefined;
  return {
    index,
    codec: "h264",
    width: pictures.width,
    height: pictures.height,
    fps: samples.fps,
    frameRate: samples.text,
    pixFmt,
    durationSec,
    frames: samples.frames,
  };
}

/** A child box of a sample entry, past the entry's own `skip` bytes of fields. */
function boxWithin(buf: Buffer, entry: Box, skip: number, type: string): Box | undefined {
  return child(buf, { ...entry, start: entry.start + skip }, type);
}

/** avcC (ISO 14496-15 5.3.3.1): the first sequence parameter set, with its NAL header. */
function firstSps(buf: Buffer, avcC: Box): Buffer | undefined {
  if (avcC.end - avcC.start < 8 || buf.readUInt8(avcC.start) !== 1) return undefined;
  if ((buf.readUInt8(avcC.start + 5) & 0x1f) < 1) return undefined;
  const length = buf.readUInt16BE(avcC.start + 6);
  const start = avcC.start + 8;
  if (start + length > avcC.end) throw new BoxError("avcC's SPS runs past its box");
  return buf.subarray(start, start + length);
}

/** The full-range flag of a `colr` box of type nclx, which ffmpeg also reads, if there is one. */
function colourRange(buf: Buffer, entry: Box): boolean | undefined {
  const colr = boxWithin(buf, entry, VISUAL_ENTRY_BYTES, "colr");
  if (!colr || colr.end - colr.start < 11) return undefined;
  if (buf.toString("latin1", colr.start, colr.start + 4) !== "nclx") return undefined;
  return (buf.readUInt8(colr.start + 10) & 0x80) !== 0;
}

function signalRange(sps: boolean | undefined, colr: boolean | undefined): "full" | "limited" | "disagree" {
  if (sps !== undefined && colr !== undefined && sps !== colr) return "disagree";
  return (sps ?? colr) ? "full" : "limited";
}

/** ffmpeg's H.264 decoder's choice for 8-bit 4:2:0 and 4:2:2 (the "j" formats say full range). */
function pixelFormat(chroma: number, luma: number, chromaDepth: number, range: "full" | "limited") {
  if (luma !== 8 || chromaDepth !== 8) return undefined;
  const j = range === "full" ? "j" : "";
  if (chroma === 1) return `yuv${j}420p`;
  if (chroma === 2) return `yuv${j}422p`;
  return undefined;
}

/**
 * The time-to-sample table as the mov demuxer reads it (mov_read_stts): its sample count is
 * ffprobe's `nb_frames`, and the count over the total duration, in the track's time scale and
 * reduced as `av_reduce` does, its average frame rate.
 */
function timeToSample(
  buf: Buffer,
  table: SampleTable,
): { frames: number; duration: number; fps: number; text: string } | undefined {
  const stts = child(buf, table.stbl, "stts");
  if (!stts) return undefined;
  fullBox(buf, stts, 4);
  const entries = buf.readUInt32BE(stts.start + 4);
  if (entries === 0) return undefined;
  fullBox(buf, stts, 4 + entries * 8);
  let frames = 0n;
  let duration = 0n;
  for (let i = 0; i < entries; i++) {
    const at = stts.start + 8 + i * 8;
    const count = BigInt(buf.readUInt32BE(at));
    let delta = BigInt(buf.readUInt32BE(at + 4));
    // ffmpeg reads deltas past INT_MAX as negative corrections: ffprobe's to read.
    if (delta > INT_MAX) return undefined;
    // ffmpeg takes an over-long single last sample for the average one.
    if (i + 1 === entries && i > 0 && count === 1n && frames > 100n && delta / 10n > duration / frames)
      delta = duration / frames;
    frames += count;
    duration += count * delta;
  }
  if (frames === 0n || duration === 0n) return undefined;
  let num = BigInt(table.timescale) * frames;
  let den = duration;
  const g = gcd(num, den);
  num /= g;
  den /= g;
  // Past INT_MAX av_reduce approximates: not exactly knowable here.
  if (num > INT_MAX || den > INT_MAX) return undefined;
  return {
    frames: Number(frames),
    duration: Number(duration),
    fps: Number(num) / Number(den),
    text: `${num}/${den}`,
  };
}

function gcd(a: bigint, b: bigint): bigint {
  let [x, y] = [a, b];
  while (y !== 0n) [x, y] = [y, x % y];
  return x;
}

/**
 * An audio sample entry's own fields after the 8-byte base: 20 bytes in version 0; QuickTime's
 * version 1 adds 16 (its sizes per packet and frame). Version 2 is ffprobe's to read.
 */
const SOUND_ENTRY_BYTES = [8 + 20, 8 + 36];

function readAudioTrack(buf: Buffer, trak: Box, index: number, movieScale: number): AudioInfo | undefined {
  const table = sampleTable(buf, trak);
  if (!table) return undefined;
  const { entry } = table;
  if (entry.type !== "mp4a" || entry.end - entry.start < 10) return undefined;
  const skip = SOUND_ENTRY_BYTES[buf.readUInt16BE(entry.start + 8)];
  if (skip === undefined || entry.end - entry.start < skip) return undefined;
  // A MOV keeps the decoder's description inside a `wave` box.
  const wave = boxWithin(buf, entry, skip, "wave");
  const esds = wave ? child(buf, wave, "esds") : boxWithin(buf, entry, skip, "esds");
  const config = esds && aacConfig(buf, esds);
  const durationSec = presented(buf, trak, movieScale, table.duration / table.timescale);
  if (!config || durationSec === undefined) return undefined;
  return { index, codec: "aac", sampleRate: config.sampleRate, channels: config.channels, durationSec };
}

const AAC_SAMPLE_RATES = [
  96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/**
 * esds (ISO 14496-1 descriptors) down to the AudioSpecificConfig (ISO 14496-3 1.6.2.1). Only
 * AAC-LC with one or two channels is read, and only where its rate is final: SBR ruled out by the
 * encoder (ffmpeg's own writes that signal), or a rate above 24 kHz, where no decoder looks for
 * SBR. Otherwise a decoder may find SBR and double the rate, which ffprobe reports after decoding.
 */
function aacConfig(buf: Buffer, esds: Box): { sampleRate: number; channels: number } | undefined {
  fullBox(buf, esds, 0);
  const d = new Descriptors(buf, esds.start + 4, esds.end);
  const es = d.enter(0x03);
  if (!es) return undefined;
  const flags = d.skip(3) ?? 0; // ES_ID, then the flags byte
  if (flags & 0x80) d.skip(2);
  if (flags & 0x40) d.skip(d.byte() ?? 0);
  if (flags & 0x20) d.skip(2);
  if (!d.enter(0x04)) return undefined;
  if (d.byte() !== 0x40) return undefined; // objectTypeIndication: MPEG-4 audio
  d.skip(12);
  const asc = d.enter(0x05);
  if (!asc) return undefined;
  const config = asc.length >= 2 ? buf.readUInt16BE(asc.start) : 0;
  const objectType = config >> 11;
  const sampleRate = AAC_SAMPLE_RATES[(config >> 7) & 0x0f];
  const channels = (config >> 3) & 0x0f;
  // GASpecificConfig: frameLengthFlag, then dependsOnCoreCoder and extensionFlag, both unset.
  if (objectType !== 2 || sampleRate === undefined || (config & 0x03) !== 0) return undefined;
  if (channels !== 1 && channels !== 2) return undefined;
  const noSbr =
    asc.length === 5 &&
    // syncExtensionType 0x2b7, extensionAudioObjectType 5 (SBR), sbrPresentFlag 0, then padding.
    buf.readUInt16BE(asc.start + 2) >> 5 === 0x2b7 &&
    (buf.readUInt8(asc.start + 3) & 0x1f) === 5 &&
    buf.readUInt8(asc.start + 4) === 0;
  if (noSbr || (asc.length === 2 && sampleRate > 24000)) return { sampleRate, channels };
  return undefined;
}

/** A cursor over nested MPEG-4 descriptors (a tag, a length of 1–4 bytes, then the body). */
class Descriptors {
  constructor(
    private readonly buf: Buffer,
    private at: number,
    private end: number,
  ) {}

  byte(): number | undefined {
    if (this.at >= this.end) return undefined;
    return this.buf.readUInt8(this.at++);
  }

  /** Skips `n` bytes; answers the last one skipped. */
  skip(n: number): number | undefined {
    if (this.at + n > this.end) throw new BoxError("descriptor runs past its box");
    this.at += n;
    return n > 0 ? this.buf.readUInt8(this.at - 1) : undefined;
  }

  /** Steps into the next descriptor if it has this tag: the cursor then runs over its body. */
  enter(tag: number): { start: number; length: number } | undefined {
    if (this.byte() !== tag) return undefined;
    let length = 0;
    for (let i = 0; i < 4; i++) {
      const b = this.byte();
      if (b === undefined) throw new BoxError("descriptor runs past its box");
      length = length * 128 + (b & 0x7f);
      if (!(b & 0x80)) break;
    }
    if (this.at + length > this.end) throw new BoxError("descriptor runs past its box");
    this.end = this.at + length;
    return { start: this.at, length };
  }
}
