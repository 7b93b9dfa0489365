import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { JobView } from "../../src/protocol/schemas.js";
import { makeAudio } from "../helpers/media.js";
import { until } from "../helpers/until.js";
import { workerHarness } from "./harness.js";

const h = workerHarness();
afterEach(() => h.cleanup());

/** Issue 9, "bounded work": a worker measures the audio itself and refuses it over the job's limit. */
describe("a job's max_audio_seconds", () => {
  async function jobWithAudio(seconds: number, limit: number): Promise<{ view: JobView; started: number }> {
    const w = await h.start();
    const dir = await h.tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds });
    const audio = await w.uploadBlob(await readFile(join(dir, "a.wav")));
    const video = await w.uploadBlob("a video the gate engine never reads");
    // The job claims a short audio: the worker must not take the gateway's word for it.
    const res = await w.putJob("j1", { audio, video, audio_duration: 0.5, max_audio_seconds: limit });
    expect(res.status).toBe(201);
    const view = await until(async () => {
      const job = await w.job("j1");
      if (job.status === "running") w.engine.release("j1");
      return (job.status === "failed" || job.status === "succeeded") && job;
    });
    return { view, started: w.engine.started.length };
  }

  it("fails the job as the input's fault before the engine starts", async () => {
    const { view, started } = await jobWithAudio(2, 1);
    expect(view.status).toBe("failed");
    expect(view.error?.kind).toBe("input");
    expect(view.error?.message).toMatch(/audio is 2 s long; this worker was told to refuse more than 1 s/);
    expect(started).toBe(0);
  });

  it("runs audio within the limit", async () => {
    const { view, started } = await jobWithAudio(1, 5);
    expect(view.status).toBe("succeeded");
    expect(started).toBe(1);
  });
});
