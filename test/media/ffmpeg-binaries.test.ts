import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BinaryNotFoundError, ffmpegPath, ffprobePath, findBinary } from "../../src/media/ffmpeg-binaries.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ffbin-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function script(name: string, mode: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, "#!/bin/sh\necho fake\n");
  await chmod(path, mode);
  return path;
}

const noPackage = (): string => {
  throw "Unsupported platform/architecture: plan9-mips";
};

describe("findBinary", () => {
  it("honours FFMPEG_PATH before PATH and the npm package", async () => {
    const chosen = await script("my-ffmpeg", 0o755);
    await script("ffmpeg", 0o755);
    const found = await findBinary("ffmpeg", {
      env: { FFMPEG_PATH: chosen, PATH: dir },
      packagePath: noPackage,
    });
    expect(found).toBe(chosen);
  });

  it("refuses an FFPROBE_PATH that is not executable instead of silently using another", async () => {
    const bad = await script("ffprobe-copy", 0o644);
    await expect(findBinary("ffprobe", { env: { FFPROBE_PATH: bad } })).rejects.toThrow(
      /FFPROBE_PATH=.*not an executable/,
    );
  });

  it("finds the tool on PATH", async () => {
    const onPath = await script("ffprobe", 0o755);
    const found = await findBinary("ffprobe", {
      env: { PATH: `/nonexistent:${dir}` },
      packagePath: noPackage,
    });
    expect(found).toBe(onPath);
  });

  it("makes the npm package's binary executable when npm skipped its postinstall chmod", async () => {
    const packaged = await script("ffprobe-from-npm", 0o644);
    const found = await findBinary("ffprobe", { env: { PATH: "" }, packagePath: () => packaged });
    expect(found).toBe(packaged);
    expect((await stat(packaged)).mode & 0o111).not.toBe(0);
  });

  it("names every place it tried when nothing is found", async () => {
    const err = await findBinary("ffmpeg", { env: { PATH: dir }, packagePath: noPackage }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BinaryNotFoundError);
    const message = (err as Error).message;
    expect(message).toContain("FFMPEG_PATH: not set");
    expect(message).toContain("ffmpeg on PATH");
    expect(message).toContain("@ffmpeg-installer/ffmpeg: Unsupported platform/architecture: plan9-mips");
  });
});

describe("ffmpegPath / ffprobePath", () => {
  it("resolve to binaries that run, the same path each time", async () => {
    const run = promisify(execFile);
    const ffmpeg = await ffmpegPath();
    const ffprobe = await ffprobePath();
    expect(await ffmpegPath()).toBe(ffmpeg);
    expect((await run(ffmpeg, ["-version"])).stdout).toMatch(/^ffmpeg version/);
    expect((await run(ffprobe, ["-version"])).stdout).toMatch(/^ffprobe version/);
  });
});
