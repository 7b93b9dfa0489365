import type { MediaInfo } from "./probe.js";

/** The codecs read here, by the format tag of `fmt `: integer PCM and IEEE float. */
const CODECS: Readonly<Record<number, string>> = { 1: "pcm", 3: "pcm_f" };

/**
 * Measures a plain PCM WAV from its chunk headers, in microseconds: the commonest audio a TTS or a
 * recorder gives, and what music-metadata took most of a millisecond to parse per upload (issue
 * 14). `head` is the file's beginning (or all of it) and `fileSize` its size. The facts are those
 * the parser gave (audio-header.ts, which falls back to it): samples = the data chunk's bytes,
 * cut at the end of the file, ÷ the block size; duration = samples ÷ rate, as ffprobe reports it.
 *
 * Anything less plain answers `undefined`, for the parser or ffprobe to judge: another codec or
 * WAVE_FORMAT_EXTENSIBLE, a `fact` chunk (whose sample count the parser prefers), a block size
 * that does not match the channels and sample size, a chunk of odd size before the data, a data
 * chunk of unknown size (streamed WAV), or headers beyond `head`.
 */
export function readWav(head: Buffer, fileSize: number): MediaInfo | undefined {
  if (
    head.length < 12 ||
    head.toString("latin1", 0, 4) !== "RIFF" ||
    head.toString("latin1", 8, 12) !== "WAVE"
  )
    return undefined;
  let format: { codec: string; channels: number; sampleRate: number; blockAlign: number } | undefined;
  for (let at = 12; at + 8 <= head.length; ) {
    const id = head.toString("latin1", at, at + 4);
    const size = head.readUInt32LE(at + 4);
    const body = at + 8;
    if (id === "data") {
      if (!format || size === 0xffffffff) return undefined;
      const bytes = Math.min(size, fileSize - body);
      const samples = bytes / format.blockAlign;
      const durationSec = samples / format.sampleRate;
      if (!(durationSec > 0 && Number.isFinite(durationSec))) return undefined;
      const { codec, sampleRate, channels } = format;
      return {
        durationSec,
        formatName: "wav",
        audio: { index: 0, codec, sampleRate, channels, durationSec },
      };
    }
    if (id === "fact" || size % 2 === 1) return undefined;
    if (id === "fmt ") {
      if (size < 16 || body + 16 > head.length) return undefined;
      const codec = CODECS[head.readUInt16LE(body)];
      const channels = head.readUInt16LE(body + 2);
      const sampleRate = head.readUInt32LE(body + 4);
      const blockAlign = head.readUInt16LE(body + 12);
      const bits = head.readUInt16LE(body + 14);
      if (!codec || channels === 0 || sampleRate === 0 || bits === 0 || bits % 8 !== 0) return undefined;
      if (blockAlign !== channels * (bits / 8)) return undefined;
      format = { codec, channels, sampleRate, blockAlign };
    }
    at = body + size;
  }
  return undefined;
}
