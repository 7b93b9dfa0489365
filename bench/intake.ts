import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findBinary, npmPackagePath, parseVersionBanner } from "../src/media/ffmpeg-binaries.js";
import { startGateway } from "./fleet.js";
import { mapLimit } from "./harness.js";
import { postTask } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { percentile, round } from "./stats.js";

/**
 * Issue 8: how fast POST /tasks takes new work, and that it does not depend on which ffprobe is
 * installed. The same run measures the gateway under each ffprobe build the machine has (the
 * system's and the bundled static one): Debian's starts in ~80 ms, the static one in ~12 ms.
 */

const CLIENTS = 4;
const TARGET_PER_SEC = 200;

interface Build {
  readonly label: string;
  readonly ffmpeg: string;
  readonly ffprobe: string;
  readonly version: string;
}

export const intake: Benchmark = {
  name: "intake",
  title: "Intake",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 50 : 200;
    const dir = await ctx.scope.tempDir("mh-bench-intake-");
    const video = await ctx.media.video(1, "160x120");
    // Every task brings its own speech (a distinct file, so nothing is known of it) and the same
    // template (known after the first task).
    const audios = await Promise.all(
      Array.from({ length: count + 1 }, (_, i) => writeWav(join(dir, `speech-${i}.wav`), 0.5, i + 1)),
    );
    const builds = await ffprobeBuilds();
    const runs: Array<Build & Awaited<ReturnType<typeof createTasks>>> = [];
    for (const build of builds) {
      ctx.log(`POST /tasks: ${count} tasks, ${CLIENTS} clients, ffprobe ${build.label}`);
      runs.push({ ...build, ...(await createTasks(ctx, build, audios, video)) });
    }
    return {
      figures: runs.map((r) =>
        figure(
          `intake.post-tasks-per-sec.${r.label}`,
          `Intake: POST /tasks, new audio + reused template, ffprobe ${r.label} (${r.version})`,
          round(r.perSec, 1),
          "tasks/s",
          { op: ">=", value: TARGET_PER_SEC },
        ),
      ),
      tables: [
        {
          title: `POST /tasks: ${count} tasks, ${CLIENTS} clients at a time`,
          columns: ["ffprobe", "version", "tasks/s", "p50 ms", "p99 ms", "audio", "video"],
          rows: runs.map((r) => [
            r.label,
            r.version,
            round(r.perSec, 1),
            round(r.p50Ms, 1),
            round(r.p99Ms, 1),
            "0.5 s 16 kHz WAV (16 kB), a new one per task",
            "1 s 160x120 H.264 MP4, the same for every task",
          ]),
        },
      ],
      method: [
        "A fresh gateway child with no machines per ffprobe build (tasks stay pending, so only creation is " +
          "measured: multipart upload, hashing, media checks, SQLite insert), started with FFMPEG_PATH and " +
          "FFPROBE_PATH naming the build. One warm-up task first (it brings the template, which is then known); " +
          `then ${count} tasks sent by ${CLIENTS} concurrent clients, each with its own audio file; ` +
          "tasks/s = tasks ÷ wall time from the first request to the last answer.",
        "Builds: the ffmpeg/ffprobe on PATH (a distribution's, when installed) and the static pair in the " +
          "npm packages; a machine with only one measures one.",
      ],
      raw: { runs },
    };
  },
};

async function ffprobeBuilds(): Promise<Build[]> {
  const builds: Build[] = [];
  const bundled = { ffmpeg: npmPackagePath("ffmpeg"), ffprobe: npmPackagePath("ffprobe") };
  const system = await Promise.all([
    findBinary("ffmpeg", { packagePath: () => "" }),
    findBinary("ffprobe", { packagePath: () => "" }),
  ]).catch(() => undefined);
  if (system && system[1] !== bundled.ffprobe) {
    builds.push({
      label: "system",
      ffmpeg: system[0],
      ffprobe: system[1],
      version: await version(system[1]),
    });
  }
  builds.push({ label: "bundled", ...bundled, version: await version(bundled.ffprobe) });
  return builds;
}

function version(binary: string): Promise<string> {
  return new Promise((resolve) =>
    execFile(binary, ["-version"], { timeout: 10_000 }, (_err, out) =>
      resolve(parseVersionBanner(String(out))),
    ),
  );
}

async function createTasks(ctx: BenchContext, build: Build, audios: readonly string[], video: string) {
  const dir = await ctx.scope.tempDir("mh-bench-post-");
  const env = { FFMPEG_PATH: build.ffmpeg, FFPROBE_PATH: build.ffprobe };
  const gateway = await startGateway(ctx.scope, dir, [], [], `gateway-intake-${build.label}`, undefined, env);
  try {
    const [first, ...rest] = audios;
    if (first) await postTask(gateway.url, first, video); // warm-up: the template's probe, SQLite pages
    const latencies: number[] = [];
    const t0 = performance.now();
    await mapLimit(rest, CLIENTS, async (audio) => {
      const p0 = performance.now();
      await postTask(gateway.url, audio, video);
      latencies.push(performance.now() - p0);
    });
    const seconds = (performance.now() - t0) / 1000;
    return {
      perSec: rest.length / seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      seconds,
    };
  } finally {
    await gateway.child.kill();
  }
}

/** A mono 16 kHz 16-bit WAV of seeded noise: each seed gives different bytes, so a different hash. */
export async function writeWav(path: string, seconds: number, seed: number): Promise<string> {
  const rate = 16_000;
  const samples = Math.round(seconds * rate);
  const data = Buffer.alloc(samples * 2);
  let state = seed >>> 0;
  for (let i = 0; i < samples; i++) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    data.writeInt16LE(((state >>> 16) - 32_768) >> 4, i * 2);
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVEfmt ", 8, "ascii");
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36, "ascii");
  header.writeUInt32LE(data.length, 40);
  await writeFile(path, Buffer.concat([header, data]));
  return path;
}
