import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EngineJob, EngineRunContext } from "../../src/engines/engine.js";
import { SimulateEngine } from "../../src/engines/simulate-engine.js";
import { EngineError } from "../../src/errors.js";
import { makeAudio, makeNotMedia, makeVideo, probe, topLevelBoxes } from "../helpers/media.js";
import { until } from "../helpers/until.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "simulate-engine-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function jobFor(audioPath: string, videoPath: string, audioDuration?: number): Promise<EngineJob> {
  const workDir = join(dir, "work");
  await mkdir(workDir, { recursive: true });
  return {
    id: "sim-1",
    audioPath,
    videoPath,
    outputPath: join(workDir, "output.mp4"),
    workDir,
    options: { chaofen: 0, watermark_switch: 0, pn: 1 },
    ...(audioDuration === undefined ? {} : { audioDuration }),
  };
}

interface Recorder extends EngineRunContext {
  readonly progress: number[];
}

function recorder(signal: AbortSignal = new AbortController().signal): Recorder {
  const progress: number[] = [];
  return { signal, progress, onProgress: (p) => progress.push(p) };
}

/** A file a client can play: MP4 with the moov box first, a video stream, the audio's length. */
async function expectResult(path: string, seconds: number, size: { width: number; height: number }) {
  const info = await probe(path);
  expect(info.formatName).toContain("mp4");
  expect(info.video).toMatchObject(size);
  expect(info.audio?.codec).toBe("aac");
  expect(Math.abs(info.durationSec - seconds)).toBeLessThanOrEqual(0.2);
  const boxes = await topLevelBoxes(path);
  expect(boxes.indexOf("moov")).toBeLessThan(boxes.indexOf("mdat"));
}

describe("SimulateEngine", () => {
  it("loops a shorter template to the audio's length, probing the audio itself", async () => {
    const video = join(dir, "template.mp4");
    const audio = join(dir, "speech.wav");
    await makeVideo(video, { seconds: 1, width: 160, height: 120 });
    await makeAudio(audio, { seconds: 2.5 });
    const job = await jobFor(audio, video);
    const ctx = recorder();

    await new SimulateEngine({ speedFactor: 2, timeScale: 0.01 }).run(job, ctx);

    await expectResult(job.outputPath, 2.5, { width: 160, height: 120 });
    expect(ctx.progress.at(-1)).toBe(100);
    expect(ctx.progress.every((v, i) => i === 0 || v >= (ctx.progress[i - 1] ?? 0))).toBe(true);
  });

  it("cuts a longer template to the duration the job states", async () => {
    const video = join(dir, "template.mp4");
    const audio = join(dir, "speech.m4a");
    await makeVideo(video, { seconds: 3, width: 64, height: 48, fps: 30, withAudio: true });
    await makeAudio(audio, { seconds: 1.2 });
    const job = await jobFor(audio, video, 1.2);

    await new SimulateEngine({ speedFactor: 1, timeScale: 0 }).run(job, recorder());

    await expectResult(job.outputPath, 1.2, { width: 64, height: 48 });
  });

  it("stops waiting when the job is aborted", async () => {
    const video = join(dir, "template.mp4");
    const audio = join(dir, "speech.wav");
    await makeVideo(video, { seconds: 1, width: 64, height: 48 });
    await makeAudio(audio, { seconds: 1 });
    const job = await jobFor(audio, video, 1);
    const controller = new AbortController();
    const ctx = recorder(controller.signal);

    // An hour of simulated work: only the abort can end it within the test's time.
    const outcome = new SimulateEngine({ speedFactor: 3600, timeScale: 1 }).run(job, ctx).then(
      () => "resolved",
      (e: unknown) => e,
    );
    await until(() => ctx.progress.length > 0, 10_000, { what: "the simulation to start" });
    controller.abort();

    const err = await outcome;
    expect((err as Error).name).toBe("AbortError");
    expect(existsSync(job.outputPath)).toBe(false);
  });

  it("blames the input for audio it cannot read", async () => {
    const video = join(dir, "template.mp4");
    const audio = join(dir, "speech.wav");
    await makeVideo(video, { seconds: 1, width: 64, height: 48 });
    await makeNotMedia(audio);
    const job = await jobFor(audio, video);

    const err = await new SimulateEngine({ speedFactor: 1, timeScale: 0 })
      .run(job, recorder())
      .catch((e) => e);

    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).kind).toBe("input");
  });

  it("takes its capacity from max_concurrent and refuses bad settings", () => {
    expect(new SimulateEngine(undefined, { maxConcurrent: 8 }).capacity).toBe(8);
    expect(() => new SimulateEngine({ speedFactor: -1, timeScale: 1 })).toThrow(/speedFactor/);
  });
});
