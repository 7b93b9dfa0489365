import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StartupError } from "../../src/errors.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";

describe("--blobs-dir", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir("mh-blobs-dir-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("a folder that cannot be made stops the start with one line naming the flag", async () => {
    const refused = await startTestGateway({ blobsDir: "/dev/null/blobs" }, join(dir, "data")).catch(
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(StartupError);
    expect((refused as Error).message).toMatch(
      /^\/dev\/null\/blobs: cannot keep the blobs there \(.*not a directory.*\); check --blobs-dir$/,
    );
  });

  // Where Node's own recursive mkdir spins for ever at 100 % of a core (src/make-dir.ts).
  it.skipIf(!existsSync("/proc/self"))(
    "a folder under /proc stops the start too, rather than hanging it",
    async () => {
      const blobsDir = `/proc/mh-test-${process.pid}/blobs`;
      const refused = await startTestGateway({ blobsDir }, join(dir, "data")).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(StartupError);
      expect((refused as Error).message).toBe(
        `${blobsDir}: cannot keep the blobs there (ENOENT: no such file or directory, mkdir '/proc/mh-test-${process.pid}'); check --blobs-dir`,
      );
    },
  );
});
