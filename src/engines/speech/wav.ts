import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runFfmpeg } from "../../media/run-ffmpeg.js";

/** The format of PCM samples in a WAV file. */
export interface PcmFormat {
  readonly channels: number;
  readonly sampleRate: number;
  readonly bitsPerSample: number;
}

export interface PcmAudio {
  readonly format: PcmFormat;
  readonly samples: Buffer;
}

/** Not a WAV file of plain PCM samples. */
export class WavError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WavError";
  }
}

/**
 * Reads a RIFF WAV of integer PCM. A streaming writer (fish-speech with `streaming`, espeak-ng
 * writing to a pipe) leaves 0 or 0xFFFFFFFF as the data size: the samples then run to the end.
 */
export function parseWav(bytes: Buffer): PcmAudio {
  if (
    bytes.length < 12 ||
    bytes.toString("ascii", 0, 4) !== "RIFF" ||
    bytes.toString("ascii", 8, 12) !== "WAVE"
  ) {
    throw new WavError("not a RIFF WAVE file");
  }
  let format: PcmFormat | undefined;
  let at = 12;
  while (at + 8 <= bytes.length) {
    const id = bytes.toString("ascii", at, at + 4);
    const size = bytes.readUInt32LE(at + 4);
    const body = at + 8;
    if (id === "fmt ") {
      const audioFormat = bytes.readUInt16LE(body);
      // 0xFFFE: WAVE_FORMAT_EXTENSIBLE, whose sub-format is PCM for every writer we meet.
      if (audioFormat !== 1 && audioFormat !== 0xfffe)
        throw new WavError(`WAV format ${audioFormat} is not PCM`);
      format = {
        channels: bytes.readUInt16LE(body + 2),
        sampleRate: bytes.readUInt32LE(body + 4),
        bitsPerSample: bytes.readUInt16LE(body + 14),
      };
    } else if (id === "data") {
      if (!format) throw new WavError("WAV data before its format");
      const end =
        size === 0 || size === 0xffffffff || body + size > bytes.length ? bytes.length : body + size;
      const frame = (format.channels * format.bitsPerSample) / 8;
      const usable = end - body - ((end - body) % frame);
      return { format, samples: bytes.subarray(body, body + usable) };
    }
    at = body + size + (size % 2);
  }
  throw new WavError("WAV without a data chunk");
}

export function encodeWav(audio: PcmAudio): Buffer {
  const { channels, sampleRate, bitsPerSample } = audio.format;
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + audio.samples.length, 4);
  header.write("WAVE", 8, "ascii");
  header.write("fmt ", 12, "ascii");
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE((sampleRate * channels * bitsPerSample) / 8, 28);
  header.writeUInt16LE((channels * bitsPerSample) / 8, 32);
  header.writeUInt16LE(bitsPerSample, 34);
  header.write("data", 36, "ascii");
  header.writeUInt32LE(audio.samples.length, 40);
  return Buffer.concat([header, audio.samples]);
}

export function durationSeconds(audio: PcmAudio): number {
  const { channels, sampleRate, bitsPerSample } = audio.format;
  return audio.samples.length / ((channels * bitsPerSample) / 8) / sampleRate;
}

function sameFormat(a: PcmFormat, b: PcmFormat): boolean {
  return a.channels === b.channels && a.sampleRate === b.sampleRate && a.bitsPerSample === b.bitsPerSample;
}

/**
 * One WAV from the parts of a split text, sample after sample (issue 12: "joined without
 * clicks"): no container boundary, no encoder padding, no gap. A part in another format (or not a
 * plain WAV) is first decoded by ffmpeg to the first part's format, so the samples always meet at
 * one rate.
 */
export async function joinWavs(
  parts: readonly Buffer[],
  options: { readonly workDir: string; readonly signal?: AbortSignal },
): Promise<Buffer> {
  if (parts.length === 0) throw new RangeError("no audio to join");
  const decoded: PcmAudio[] = [];
  let target: PcmFormat | undefined;
  for (const [i, bytes] of parts.entries()) {
    let audio: PcmAudio | undefined;
    try {
      audio = parseWav(bytes);
    } catch (err) {
      if (!(err instanceof WavError)) throw err;
    }
    if (audio && (target === undefined || sameFormat(audio.format, target))) {
      target ??= audio.format;
      decoded.push(audio);
      continue;
    }
    const format = target ?? { channels: 1, sampleRate: 44_100, bitsPerSample: 16 };
    target = format;
    decoded.push(await decodeTo(bytes, format, join(options.workDir, `join-${i}`), options.signal));
  }
  const format = target ?? { channels: 1, sampleRate: 44_100, bitsPerSample: 16 };
  return encodeWav({ format, samples: Buffer.concat(decoded.map((d) => d.samples)) });
}

async function decodeTo(
  bytes: Buffer,
  format: PcmFormat,
  stem: string,
  signal?: AbortSignal,
): Promise<PcmAudio> {
  const input = `${stem}.in`;
  const output = `${stem}.wav`;
  await writeFile(input, bytes);
  const codec =
    format.bitsPerSample === 32 ? "pcm_s32le" : format.bitsPerSample === 8 ? "pcm_u8" : "pcm_s16le";
  await runFfmpeg(
    [
      "-v",
      "error",
      "-y",
      "-i",
      input,
      "-vn",
      "-c:a",
      codec,
      "-ar",
      String(format.sampleRate),
      "-ac",
      String(format.channels),
      output,
    ],
    signal ? { signal } : {},
  );
  return parseWav(await readFile(output));
}
