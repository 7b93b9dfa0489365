import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { probeMedia } from "../src/media/probe.js";
import { runFfmpeg } from "../src/media/run-ffmpeg.js";

/**
 * Benchmark inputs, made with the same ffmpeg the gateway and workers use and kept in one temp
 * dir for the whole run (each file is made once, on first use). Every file is valid media: the
 * gateway probes what it receives and refuses anything else.
 */
export class MediaKit {
  private readonly made = new Map<string, Promise<string>>();

  constructor(private readonly dir: string) {}

  /** Mono AAC at 8 kHz: the cheapest audio to make and for the simulate engine to re-encode. */
  audio(seconds: number, frequency = 440): Promise<string> {
    const name = `tone-${seconds.toFixed(1)}s-${frequency}hz.m4a`;
    return this.once(name, (path) =>
      runFfmpeg([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        `sine=frequency=${frequency}:sample_rate=8000:duration=${seconds}`,
        "-ac",
        "1",
        "-c:a",
        "aac",
        "-b:a",
        "16k",
        path,
      ]),
    );
  }

  /**
   * `count` AAC files of about a second each, every one a tone of its own (200 + n Hz), so that
   * every task has a result of its own; made in one ffmpeg run however many.
   */
  distinctAudios(count: number): Promise<string[]> {
    const folder = `tones-${count}`;
    return this.once(folder, async (path) => {
      await mkdir(path);
      await runFfmpeg([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        // One more second than asked: the segment muxer cuts on AAC frames, and the last is a stub.
        `aevalsrc=sin(2*PI*(200+floor(t))*t):s=8000:d=${count + 1}`,
        "-c:a",
        "aac",
        "-f",
        "segment",
        "-segment_time",
        "1",
        "-reset_timestamps",
        "1",
        join(path, "%d.m4a"),
      ]);
    }).then((path) => Array.from({ length: count }, (_, n) => join(path, `${n}.m4a`)));
  }

  /** 16-bit PCM WAV, as many clients send. */
  wav(seconds: number): Promise<string> {
    return this.once(`tone-${seconds}s.wav`, (path) =>
      runFfmpeg([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        `sine=frequency=440:sample_rate=16000:duration=${seconds}`,
        "-c:a",
        "pcm_s16le",
        path,
      ]),
    );
  }

  /** A small H.264 MP4 of ffmpeg's test pattern: the "person" template of most benchmarks. */
  video(seconds: number, size = "320x240"): Promise<string> {
    return this.once(`testsrc-${seconds}s-${size}.mp4`, (path) =>
      runFfmpeg([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        `testsrc=size=${size}:rate=25:duration=${seconds}`,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path,
      ]),
    );
  }

  /**
   * A valid H.264 MP4 of about `bytes` (a little under): 4 s of noisy test pattern at 8 Mbit/s —
   * the bitrate of a 1080p template — stream-copied in a loop until ffmpeg's size limit ends it.
   * Noise keeps the encoder from shrinking it, so the size comes from the bitrate, as with a real
   * recording.
   */
  bigVideo(bytes: number): Promise<string> {
    return this.once(`noise-${Math.round(bytes / 1e6)}MB.mp4`, async (path) => {
      const clip = join(this.dir, "noise-clip.mp4");
      await this.once("noise-clip.mp4", () =>
        runFfmpeg([
          "-v",
          "error",
          "-f",
          "lavfi",
          "-i",
          "testsrc=size=1280x720:rate=25:duration=4",
          "-vf",
          "noise=alls=60:allf=t",
          "-c:v",
          "libx264",
          "-preset",
          "ultrafast",
          "-b:v",
          "8M",
          "-maxrate",
          "8M",
          "-bufsize",
          "16M",
          "-pix_fmt",
          "yuv420p",
          clip,
        ]),
      );
      await runFfmpeg([
        "-v",
        "error",
        "-stream_loop",
        "-1",
        "-i",
        clip,
        "-c",
        "copy",
        "-fs",
        String(bytes),
        "-f",
        "mp4",
        path,
      ]);
      const info = await probeMedia(path);
      if (!info.video) throw new Error(`${path}: ffprobe finds no video stream`);
    });
  }

  private once(name: string, make: (path: string) => Promise<void>): Promise<string> {
    let file = this.made.get(name);
    if (!file) {
      const path = join(this.dir, name);
      file = make(path).then(() => path);
      this.made.set(name, file);
    }
    return file;
  }
}

export interface FileFacts {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** Size and SHA-256 of a file, read as a stream (what a client of the worker protocol must do). */
export async function fileFacts(path: string): Promise<FileFacts> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { path, bytes: (await stat(path)).size, sha256: hash.digest("hex") };
}
