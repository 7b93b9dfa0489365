import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveWorkerConfig, type WorkerFlags } from "../../src/config/worker-config.js";
import { ConfigError } from "../../src/errors.js";

const ENGINES = ["ffmpeg", "heygem"];
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mh-worker-tts-"));
  await mkdir(join(dir, "voice"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const resolveIn = (flags: WorkerFlags) => resolveWorkerConfig(flags, ENGINES, dir);

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("worker configuration of fish-speech containers (--tts)", () => {
  it("takes one instance per --tts URL=DIR, relative folders from the cwd", () => {
    const config = resolveIn({ tts: ["http://127.0.0.1:18180/=voice"] });
    expect(config.tts?.instances).toEqual([
      { name: "127.0.0.1:18180", url: "http://127.0.0.1:18180", dataDir: join(dir, "voice") },
    ]);
    expect(resolveIn({}).tts).toBeUndefined();
  });

  it("reads tts.instances from worker.json, folders relative to the file", async () => {
    const path = join(dir, "worker.json");
    await writeFile(
      path,
      JSON.stringify({
        tts: { instances: [{ url: "http://10.0.0.5:18180", data_dir: "voice", name: "tts0" }] },
      }),
    );
    const config = resolveIn({ config: path });
    expect(config.tts?.instances).toEqual([
      { name: "tts0", url: "http://10.0.0.5:18180", dataDir: join(dir, "voice") },
    ]);
  });

  it("names the flag, the file and the field when a value is wrong", async () => {
    expect(configError(() => resolveIn({ tts: ["http://127.0.0.1:18180"] })).message).toMatch(
      /--tts.*URL=DATA_DIR/s,
    );
    expect(configError(() => resolveIn({ tts: ["http://127.0.0.1:18180=missing"] })).message).toMatch(
      /folder not found/,
    );
    const path = join(dir, "worker.json");
    await writeFile(
      path,
      JSON.stringify({ tts: { instances: [{ url: "http://x:1", data_dir: "nowhere" }] } }),
    );
    const err = configError(() => resolveIn({ config: path }));
    expect(err.message).toMatch(/tts\.instances\[0\]\.data_dir/);
  });
});
