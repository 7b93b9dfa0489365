import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HEYGEM_DEFAULTS } from "../../src/config/heygem-config.js";
import { resolveWorkerConfig, type WorkerFlags } from "../../src/config/worker-config.js";
import { ConfigError } from "../../src/errors.js";

const ENGINES = ["ffmpeg", "heygem"];
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mh-worker-config-"));
  await mkdir(join(dir, "gpu0"));
  await mkdir(join(dir, "gpu1"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const resolveIn = (flags: WorkerFlags) => resolveWorkerConfig(flags, ENGINES, dir);

async function workerFile(content: unknown): Promise<string> {
  const path = join(dir, "worker.json");
  await writeFile(path, JSON.stringify(content));
  return path;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("worker configuration of the heygem engine", () => {
  it("takes one instance per --heygem URL=DATA_DIR, with production defaults", () => {
    const config = resolveIn({
      engine: "heygem",
      heygem: ["http://127.0.0.1:8390=gpu0", "http://127.0.0.1:8391/=gpu1"],
    });
    expect(config.heygem?.instances).toEqual([
      { name: "127.0.0.1:8390", url: "http://127.0.0.1:8390", dataDir: join(dir, "gpu0") },
      { name: "127.0.0.1:8391", url: "http://127.0.0.1:8391", dataDir: join(dir, "gpu1") },
    ]);
    expect(config.heygem).toMatchObject(HEYGEM_DEFAULTS);
    expect(HEYGEM_DEFAULTS).toMatchObject({ pollIntervalMs: 2000, stallTimeoutMs: 600_000 });
  });

  it("also splits one value on commas (one environment variable for several containers)", () => {
    const config = resolveIn({ engine: "heygem", heygem: ["http://a:1=gpu0, http://b:2=gpu1"] });
    expect(config.heygem?.instances.map((i) => i.name)).toEqual(["a:1", "b:2"]);
  });

  it("refuses the heygem engine without instances, a malformed flag and a missing folder", () => {
    expect(configError(() => resolveIn({ engine: "heygem" })).message).toMatch(
      /^--heygem: --engine heygem needs/,
    );
    expect(configError(() => resolveIn({ heygem: ["http://a:1"] })).message).toMatch(/expected URL=DATA_DIR/);
    expect(configError(() => resolveIn({ heygem: ["ftp://a:1=gpu0"] })).message).toMatch(
      /expected an http:\/\/ URL/,
    );
    expect(configError(() => resolveIn({ heygem: ["http://a:1=nope"] })).message).toMatch(
      /folder not found: .*nope/,
    );
    expect(configError(() => resolveIn({ heygem: ["http://a:1=gpu0", "http://a:1=gpu1"] })).message).toMatch(
      /listed twice/,
    );
  });

  it("reads worker.json, paths relative to the file, and lets flags win", async () => {
    const file = await workerFile({
      engine: "heygem",
      port: 8123,
      data_dir: "agent-data",
      heygem: {
        instances: [{ url: "http://127.0.0.1:8390", data_dir: "gpu0", name: "gpu0" }],
        stall_timeout_ms: 1234,
        poll_interval_ms: 500,
      },
    });
    const fromFile = resolveWorkerConfig({ config: file }, ENGINES, "/somewhere/else");
    expect(fromFile).toMatchObject({
      engine: "heygem",
      port: 8123,
      dataDir: join(dir, "agent-data"),
      configFile: file,
    });
    expect(fromFile.heygem).toMatchObject({
      instances: [{ name: "gpu0", url: "http://127.0.0.1:8390", dataDir: join(dir, "gpu0") }],
      stallTimeoutMs: 1234,
      pollIntervalMs: 500,
      busyTimeoutMs: HEYGEM_DEFAULTS.busyTimeoutMs,
    });

    const overridden = resolveIn({
      config: file,
      port: "9000",
      heygem: ["http://127.0.0.1:8391=gpu1"],
      heygemStallTimeout: "99",
    });
    expect(overridden.port).toBe(9000);
    expect(overridden.heygem?.instances.map((i) => i.url)).toEqual(["http://127.0.0.1:8391"]);
    expect(overridden.heygem).toMatchObject({ stallTimeoutMs: 99, pollIntervalMs: 500 });
  });

  it("names the file and the field of a bad setting", async () => {
    const bad = async () => configError(() => resolveIn({ config: "worker.json" })).message;
    await workerFile({ heygem: { instances: [{ url: "127.0.0.1:8390", data_dir: "gpu0" }] } });
    expect(await bad()).toMatch(/worker\.json: heygem\.instances\[0\]\.url: /);
    await workerFile({ heygem: { instances: [], stall_timeout: 5 } });
    expect(await bad()).toMatch(/worker\.json: heygem\.stall_timeout: unknown setting/);
    await workerFile({ heygem: { instances: [{ url: "http://a:1", data_dir: "missing" }] } });
    expect(await bad()).toMatch(/worker\.json: heygem\.instances\[0\]\.data_dir: folder not found/);
    await workerFile({ heygem: { instances: [], poll_interval_ms: 1 } });
    expect(await bad()).toMatch(/worker\.json: heygem\.poll_interval_ms: 1 is not an integer ≥ 10$/);
    await workerFile({ engine: "warp" });
    expect(await bad()).toMatch(/worker\.json: engine: "warp" is not one of ffmpeg, heygem$/);
    expect(configError(() => resolveIn({ config: "nope.json" })).message).toMatch(
      /nope\.json: file not found/,
    );
  });

  it("rejects a bad timer flag by name", () => {
    expect(
      configError(() => resolveIn({ heygem: ["http://a:1=gpu0"], heygemPollInterval: "fast" })).message,
    ).toBe('--heygem-poll-interval: "fast" is not an integer ≥ 10');
  });
});
