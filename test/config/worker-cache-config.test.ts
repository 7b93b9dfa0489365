import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveWorkerConfig, type WorkerFlags } from "../../src/config/worker-config.js";
import { engineNames } from "../../src/engines/registry.js";
import { ConfigError } from "../../src/errors.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "worker-cache-config-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const resolveFlags = (flags: WorkerFlags) => resolveWorkerConfig(flags, engineNames(), dir);

describe("--cache-max-gb", () => {
  it("takes fractions of a GB, down to a few bytes, and 0 for no limit", () => {
    expect(resolveFlags({ cacheMaxGb: "0.5" }).cacheMaxBytes).toBe(500_000_000);
    expect(resolveFlags({ cacheMaxGb: "0.000001" }).cacheMaxBytes).toBe(1000);
    // However small, a positive value stays a limit.
    expect(resolveFlags({ cacheMaxGb: "1e-12" }).cacheMaxBytes).toBe(1);
    expect(resolveFlags({ cacheMaxGb: "0" }).cacheMaxBytes).toBe(0);
  });

  it("leaves the default to the worker, which reads the disk's size at start", () => {
    expect(resolveFlags({}).cacheMaxBytes).toBeUndefined();
  });

  it("is cache_max_gb in worker.json, and a flag wins over it", async () => {
    const file = join(dir, "worker.json");
    await writeFile(file, JSON.stringify({ cache_max_gb: 2.5 }));
    expect(resolveFlags({ config: file }).cacheMaxBytes).toBe(2_500_000_000);
    expect(resolveFlags({ config: file, cacheMaxGb: "1" }).cacheMaxBytes).toBe(1_000_000_000);
  });

  it("refuses a negative or non-numeric value, naming the flag", () => {
    for (const value of ["-1", "lots"]) {
      expect(() => resolveFlags({ cacheMaxGb: value })).toThrow(ConfigError);
      expect(() => resolveFlags({ cacheMaxGb: value })).toThrow(/--cache-max-gb/);
    }
  });
});
