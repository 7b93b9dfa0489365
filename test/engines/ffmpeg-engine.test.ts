import { access, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EngineJob, EngineRunContext } from "../../src/engines/engine.js";
import { FfmpegEngine } from "../../src/engines/ffmpeg-engine.js";
import { EngineError } from "../../src/errors.js";
import {
  frameLumas,
  makeAudio,
  makeNotMedia,
  makeRampVideo,
  makeVideo,
  probe,
  topLevelBoxes,
} from "../helpers/media.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ffmpeg-engine-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function jobFor(audioPath: string, videoPath: string, pn: 0 | 1 = 1): Promise<EngineJob> {
  const workDir = join(dir, "work");
  await mkdir(workDir);
  return {
    id: "job-1",
    audioPath,
    videoPath,
    outputPath: join(dir, "result.mp4"),
    workDir,
    options: { chaofen: 0, watermark_switch: 0, pn },
  };
}

interface Recorder extends EngineRunContext {
  readonly progress: Array<{ progress: number; message: string | undefined }>;
}

function recorder(signal: AbortSignal = new AbortController().signal): Recorder {
  const progress: Recorder["progress"] = [];
  return { signal, progress, onProgress: (p, message) => progress.push({ progress: p, message }) };
}

/** What every result must be, whatever the inputs: the contract clients see. */
async function expectPlayableResult(
  output: string,
  expected: { audioSec: number; width: number; height: number; fps: number },
): Promise<void> {
  const info = await probe(output);
  expect(info.video).toMatchObject({
    codec: "h264",
    pixFmt: "yuv420p",
    width: expected.width,
    height: expected.height,
  });
  expect(info.video?.fps).toBeCloseTo(expected.fps, 3);
  expect(info.audio?.codec).toBe("aac");
  expect(Math.abs(info.durationSec - expected.audioSec)).toBeLessThanOrEqual(0.2);
  const boxes = await topLevelBoxes(output);
  expect(boxes.indexOf("moov")).toBeGreaterThanOrEqual(0);
  expect(boxes.indexOf("moov")).toBeLessThan(boxes.indexOf("mdat"));
}

function expectProgressReported(ctx: Recorder): void {
  const values = ctx.progress.map((p) => p.progress);
  expect(values.length).toBeGreaterThan(1);
  expect(values.at(-1)).toBe(100);
  expect(values.every((v, i) => i === 0 || v >= (values[i - 1] ?? 0))).toBe(true);
}

/** For each output frame, the index of the ramp template frame it shows. */
async function templateFrameIndices(template: string, output: string): Promise<number[]> {
  const reference = await frameLumas(template);
  const nearest = (luma: number): number => {
    let best = 0;
    for (const [i, ref] of reference.entries()) {
      if (Math.abs(ref - luma) < Math.abs((reference[best] ?? 0) - luma)) best = i;
    }
    return best;
  };
  return (await frameLumas(output)).map(nearest);
}

describe("FfmpegEngine", () => {
  it("loops a shorter template forward then backward with pn=1", async () => {
    const video = join(dir, "ramp.mp4");
    const audio = join(dir, "speech.wav");
    await makeRampVideo(video, { frames: 25, fps: 25 });
    await makeAudio(audio, { seconds: 3 });
    const job = await jobFor(audio, video, 1);
    const ctx = recorder();

    // Small chunks, so the backward half is stitched from several reversed pieces.
    await new FfmpegEngine({ chunkFrames: 8 }).run(job, ctx);

    await expectPlayableResult(job.outputPath, { audioSec: 3, width: 64, height: 64, fps: 25 });
    expectProgressReported(ctx);
    const cycle = [
      ...Array.from({ length: 25 }, (_, i) => i),
      ...Array.from({ length: 23 }, (_, i) => 23 - i),
    ];
    const expected = Array.from({ length: 75 }, (_, i) => cycle[i % cycle.length]);
    expect(await templateFrameIndices(video, job.outputPath)).toEqual(expected);
    expect(await readdir(job.workDir)).not.toContain("ping-pong");
  });

  it("keeps the ping-pong cycle exact at an NTSC rate with uneven chunks", async () => {
    const video = join(dir, "ramp-ntsc.mp4");
    const audio = join(dir, "speech.wav");
    await makeRampVideo(video, { frames: 20, fps: "30000/1001" });
    await makeAudio(audio, { seconds: 2 });
    const job = await jobFor(audio, video, 1);

    // 7 does not divide 18 backward frames: the last chunk is short, every seam is off a round time.
    await new FfmpegEngine({ chunkFrames: 7 }).run(job, recorder());

    await expectPlayableResult(job.outputPath, { audioSec: 2, width: 64, height: 64, fps: 30000 / 1001 });
    const cycle = [
      ...Array.from({ length: 20 }, (_, i) => i),
      ...Array.from({ length: 18 }, (_, i) => 18 - i),
    ];
    const indices = await templateFrameIndices(video, job.outputPath);
    expect(indices).toEqual(Array.from({ length: indices.length }, (_, i) => cycle[i % cycle.length]));
    expect(indices.length).toBeGreaterThanOrEqual(59);
    expect(indices.length).toBeLessThanOrEqual(61);
  });

  it("restarts a shorter template from its first frame with pn=0", async () => {
    const video = join(dir, "ramp.mp4");
    const audio = join(dir, "speech.m4a");
    await makeRampVideo(video, { frames: 25, fps: 25 });
    await makeAudio(audio, { seconds: 2.6 });
    const job = await jobFor(audio, video, 0);
    const ctx = recorder();

    await new FfmpegEngine().run(job, ctx);

    await expectPlayableResult(job.outputPath, { audioSec: 2.6, width: 64, height: 64, fps: 25 });
    expectProgressReported(ctx);
    const indices = await templateFrameIndices(video, job.outputPath);
    expect(indices.slice(0, 65)).toEqual(Array.from({ length: 65 }, (_, i) => i % 25));
  });

  it("cuts a longer template to the audio and drops the template's own sound", async () => {
    const video = join(dir, "talking-head.mp4");
    const audio = join(dir, "speech.mp3");
    await makeVideo(video, { seconds: 3, width: 320, height: 240, fps: 30, withAudio: true });
    await makeAudio(audio, { seconds: 1.2 });
    const job = await jobFor(audio, video);
    const ctx = recorder();

    await new FfmpegEngine().run(job, ctx);

    await expectPlayableResult(job.outputPath, { audioSec: 1.2, width: 320, height: 240, fps: 30 });
    expectProgressReported(ctx);
    const info = await probe(job.outputPath);
    expect(info.audio?.sampleRate).toBe(44_100);
    expect(await readdir(job.workDir)).toEqual([]);
  });

  it("blames the input when a file is not media", async () => {
    const video = join(dir, "template.mp4");
    const notMedia = join(dir, "speech.wav");
    await makeVideo(video, { seconds: 1, width: 160, height: 120 });
    await makeNotMedia(notMedia);
    const job = await jobFor(notMedia, video);

    const err = await new FfmpegEngine().run(job, recorder()).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ kind: "input" });
    expect((err as Error).message).toMatch(/audio file: not a media file/);
    await expect(access(job.outputPath)).rejects.toThrow();
  });

  it("blames the input when the audio has no sound or the video no picture", async () => {
    const silentVideo = join(dir, "silent.mp4");
    const audioOnly = join(dir, "speech.m4a");
    await makeVideo(silentVideo, { seconds: 1, width: 160, height: 120 });
    await makeAudio(audioOnly, { seconds: 1 });

    const noAudio = await new FfmpegEngine()
      .run(await jobFor(silentVideo, silentVideo), recorder())
      .catch((e: unknown) => e);
    expect(noAudio).toMatchObject({
      name: "EngineError",
      kind: "input",
      message: expect.stringMatching(/no audio stream/),
    });

    await rm(join(dir, "work"), { recursive: true });
    const noVideo = await new FfmpegEngine()
      .run(await jobFor(audioOnly, audioOnly), recorder())
      .catch((e: unknown) => e);
    expect(noVideo).toMatchObject({
      name: "EngineError",
      kind: "input",
      message: expect.stringMatching(/no video stream/),
    });
  });

  it("stops ffmpeg when aborted and leaves no output", async () => {
    const video = join(dir, "template.mp4");
    const audio = join(dir, "long.wav");
    await makeVideo(video, { seconds: 1, width: 320, height: 240 });
    await makeAudio(audio, { seconds: 120, sampleRate: 8000 });
    const job = await jobFor(audio, video, 0);
    const controller = new AbortController();
    const ctx = recorder(controller.signal);
    const onProgress = ctx.onProgress;
    // Abort on ffmpeg's first own report, i.e. while the encode is running; the slow preset keeps
    // the encode far from done by then.
    const engine = new FfmpegEngine({ preset: "medium" });
    const run = engine.run(job, {
      signal: controller.signal,
      onProgress: (p, message) => {
        onProgress(p, message);
        if (message === "encoding" && p > 0) controller.abort();
      },
    });

    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(ctx.progress.at(-1)?.progress).toBeLessThan(100);
    await expect(access(job.outputPath)).rejects.toThrow();
    expect(await childFfmpegs()).toEqual([]);
  });
});

/** ffmpeg processes this test process started that are still alive (Linux /proc). */
async function childFfmpegs(): Promise<number[]> {
  if (process.platform !== "linux") return [];
  const alive: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // "pid (comm) state ppid …"; comm may hold spaces, so split after its closing parenthesis.
    const match = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
    if (match?.[1] === "ffmpeg" && Number(match[2]) === process.pid) alive.push(Number(entry));
  }
  return alive;
}
