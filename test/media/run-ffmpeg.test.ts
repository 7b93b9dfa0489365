import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FfmpegError, runFfmpeg } from "../../src/media/run-ffmpeg.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "runff-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("runFfmpeg", () => {
  it("reports whole percentages that grow and end at 100", async () => {
    const seen: number[] = [];
    await runFfmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2", "-f", "null", "-"], {
      totalDurationSec: 2,
      onProgress: (p) => seen.push(p),
    });
    expect(seen.at(-1)).toBe(100);
    expect(seen.every((p, i) => Number.isInteger(p) && (i === 0 || p > (seen[i - 1] ?? -1)))).toBe(true);
  });

  it("fails with ffmpeg's own last words", async () => {
    const err = await runFfmpeg(["-i", join(dir, "missing.mp4"), "-f", "null", "-"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FfmpegError);
    expect((err as FfmpegError).exitCode).not.toBe(0);
    expect((err as FfmpegError).message).toContain("No such file or directory");
  });

  it("kills ffmpeg when the signal aborts", async () => {
    const controller = new AbortController();
    // An endless source: only the kill can end this run.
    const run = runFfmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "null", "-"], {
      signal: controller.signal,
      totalDurationSec: 3600,
      onProgress: () => controller.abort(),
    });
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
  });

  it("does not start when the signal is already aborted", async () => {
    await expect(runFfmpeg(["-version"], { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: "AbortError",
    });
  });
});
