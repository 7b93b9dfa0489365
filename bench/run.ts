import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describeMediaTool } from "../src/media/ffmpeg-binaries.js";
import { apiThroughput } from "./api-throughput.js";
import { avatars } from "./avatars.js";
import { chaos } from "./chaos.js";
import { dataPath } from "./data-path.js";
import { dispatchLatency } from "./dispatch-latency.js";
import { dispatchStores } from "./dispatch-stores.js";
import { failover } from "./failover.js";
import { growth } from "./growth.js";
import { CLI, keepTempDirs, Scope } from "./harness.js";
import { intake } from "./intake.js";
import { intakeGateways } from "./intake-gateways.js";
import { lanDataPath } from "./lan/data-path.js";
import { lanFleet } from "./lan/fleet-locality.js";
import { MediaKit } from "./media.js";
import { peers } from "./peers.js";
import { type Benchmark, type Outcome, type RunInfo, writeResults } from "./report.js";
import { soak } from "./soak.js";
import { round } from "./stats.js";
import { takeover } from "./takeover.js";
import { templateCache } from "./template-cache.js";
import { textTasks } from "./text-tasks.js";
import { utilisation } from "./utilisation.js";
import { utilisationFailure } from "./utilisation-failure.js";

/**
 * `npm run bench [-- NAME… | --only NAME[,NAME…]] [--quick]`: runs the benchmarks one after the other on
 * this machine. A full run of all of them writes bench/RESULTS.md and bench/results.json; a quick
 * or partial run writes the same two files under dist-bench/ instead, so the figures of record
 * only ever come from a full run.
 */
const BENCHMARKS: readonly Benchmark[] = [
  utilisation,
  dispatchLatency,
  dataPath,
  templateCache,
  avatars,
  textTasks,
  apiThroughput,
  intake,
  failover,
  peers,
  dispatchStores,
  intakeGateways,
  takeover,
  lanDataPath,
  lanFleet,
  chaos,
  soak,
  utilisationFailure,
  growth,
];
const ALIASES: Record<string, string> = {
  utilization: "utilisation",
  "dispatch-latency": "dispatch",
  "api-throughput": "api",
  cache: "template-cache",
};

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function say(message: string): void {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function parseArgs(argv: readonly string[]): { quick: boolean; selected: Benchmark[] } {
  let quick = false;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--quick") quick = true;
    else if (arg === "--only" || arg.startsWith("--only=")) {
      // `--only NAME[,NAME…]`, as many times as wanted: the same as naming them.
      const value = arg === "--only" ? argv[++i] : arg.slice("--only=".length);
      if (!value) throw new Error("--only needs a benchmark name");
      names.push(...value.split(",").map((n) => ALIASES[n] ?? n));
    } else if (arg === "--keep") keepTempDirs();
    else if (arg === "--help" || arg === "-h") {
      process.stdout.write(
        `usage: npm run bench -- [--quick] [--keep] [--only NAME[,NAME…]] [${BENCHMARKS.map((b) => b.name).join(" | ")} …]\n`,
      );
      process.exit(0);
    } else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`);
    else names.push(ALIASES[arg] ?? arg);
  }
  const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length > 0) {
    throw new Error(
      `unknown benchmark ${unknown.join(", ")}; choose from ${BENCHMARKS.map((b) => b.name).join(", ")}`,
    );
  }
  const selected = names.length === 0 ? [...BENCHMARKS] : BENCHMARKS.filter((b) => names.includes(b.name));
  return { quick, selected };
}

/**
 * Between benchmarks: flush the gigabytes the last one wrote, so its disk writeback does not
 * steal CPU from the next one's measurement, and give the load a moment to drop.
 */
/** Between benchmarks: dirty pages written out and the machine left alone a moment (less when quick). */
async function settle(quick: boolean): Promise<void> {
  await promisify(execFile)("sync").catch(() => undefined);
  await sleep(quick ? 500 : 1_000);
}

async function mediaTools(): Promise<RunInfo["mediaTools"]> {
  const show = async (tool: "ffmpeg" | "ffprobe") => {
    const info = await describeMediaTool(tool);
    return info ? `${info.version} at ${info.path}` : "not found";
  };
  return { ffmpeg: await show("ffmpeg"), ffprobe: await show("ffprobe") };
}

/** The commit measured, and whether the working tree differs from it outside the benchmark itself. */
async function commit(): Promise<string> {
  const git = promisify(execFile);
  const changed = async (...paths: string[]) =>
    (await git("git", ["status", "--porcelain", "--", ...paths], { cwd: ROOT })).stdout.trim() !== "";
  try {
    const head = (await git("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT })).stdout.trim();
    const bench = ["bench", "tsconfig.bench.json"];
    const rest = await changed(".", ":(exclude)node_modules", ...bench.map((p) => `:(exclude)${p}`));
    const own = await changed(...bench);
    return `${head}${rest ? " + uncommitted changes" : ""}${own ? " (bench/ from the working tree)" : ""}`;
  } catch {
    return "unknown";
  }
}

async function main(): Promise<number> {
  const { quick, selected } = parseArgs(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm run bench does)`);
  const started = performance.now();
  const loadBefore = round(loadavg()[0] ?? Number.NaN, 2);
  const runScope = new Scope();
  const outcomes: Outcome[] = [];
  try {
    const media = new MediaKit(await runScope.tempDir("mh-bench-media-"));
    for (const bench of selected) {
      say(`${bench.name}: ${bench.title}${quick ? " (quick)" : ""}`);
      const scope = new Scope();
      const t0 = performance.now();
      try {
        const measured = await bench.run({ quick, media, scope, log: (m) => say(`${bench.name}: ${m}`) });
        outcomes.push({
          name: bench.name,
          title: bench.title,
          seconds: (performance.now() - t0) / 1000,
          ...measured,
        });
        for (const f of measured.figures)
          say(`  ${f.verdict.padEnd(6)} ${f.label}: ${f.value ?? "—"} ${f.unit}`);
      } catch (err) {
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        console.error(`[bench] ${bench.name} failed: ${message}`);
        outcomes.push({
          name: bench.name,
          title: bench.title,
          seconds: (performance.now() - t0) / 1000,
          error: message,
        });
      } finally {
        await scope.close();
        await settle(quick);
      }
    }
  } finally {
    await runScope.close();
  }

  const complete = selected.length === BENCHMARKS.length;
  const info: RunInfo = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    selected: selected.map((b) => b.name),
    complete,
    machine: {
      cpu: cpus()[0]?.model.trim() ?? "unknown",
      cores: cpus().length,
      ramGiB: round(totalmem() / 1024 ** 3, 1),
      os: `${process.platform} ${release()}`,
      loadavg: [loadBefore, round(loadavg()[0] ?? Number.NaN, 2)],
    },
    node: process.version,
    mediaTools: await mediaTools(),
    commit: await commit(),
    seconds: (performance.now() - started) / 1000,
  };
  const ofRecord = !quick && complete;
  const dir = ofRecord ? join(ROOT, "bench") : join(ROOT, "dist-bench");
  await mkdir(dir, { recursive: true });
  await writeResults(join(dir, "RESULTS.md"), join(dir, "results.json"), info, outcomes);
  say(
    `wrote ${join(dir, "RESULTS.md")} and results.json${ofRecord ? "" : " (quick or partial run: not bench/)"}`,
  );
  return outcomes.some((o) => o.error !== undefined) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`[bench] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
