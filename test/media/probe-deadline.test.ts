import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError, probeMedia } from "../../src/media/probe.js";

// Its own file: the ffprobe in use is chosen once per process, here a stand-in that never answers.
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "probe-deadline-"));
  const hang = join(dir, "ffprobe");
  await writeFile(hang, "#!/bin/sh\nexec sleep 600\n");
  await chmod(hang, 0o755);
  process.env.FFPROBE_PATH = hang;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("probeMedia's deadline", () => {
  it("kills an ffprobe that does not finish and blames the file", async () => {
    const file = join(dir, "upload");
    await writeFile(file, "x");
    const err = await probeMedia(file, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect((err as Error).message).toMatch(/did not finish reading it within 0.3 s/);
  });
});
