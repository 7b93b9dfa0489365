import { join } from "node:path";
import { type Gateway, startGateway } from "./fleet.js";
import { mapLimit } from "./harness.js";
import { getJson, postTask } from "./http.js";
import { writeWav } from "./intake.js";
import { createBenchDatabase, serverSetting, serverVersion } from "./postgres.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { percentile, round, sum } from "./stats.js";

/**
 * Issue 13: how fast POST /tasks takes new work on the PostgreSQL store, with one gateway and with
 * two sharing the database and the blob folder, beside one gateway on SQLite, in one run. The
 * workload is figure 6's (intake.ts): a new speech and a known template per task.
 */

/** Clients in all, whatever the number of gateways: the offered load stays the same. */
const CLIENTS = 4;

interface Setup {
  readonly label: string;
  readonly store: "SQLite" | "PostgreSQL";
  readonly gateways: 1 | 2;
}

const SETUPS: readonly Setup[] = [
  { label: "SQLite, one gateway", store: "SQLite", gateways: 1 },
  { label: "PostgreSQL, one gateway", store: "PostgreSQL", gateways: 1 },
  { label: "PostgreSQL, two gateways", store: "PostgreSQL", gateways: 2 },
];

interface RoundResult {
  readonly tasks: number;
  readonly seconds: number;
  readonly latenciesMs: readonly number[];
  /** Tasks each gateway took (the clients alternate between them). */
  readonly split: readonly number[];
}

interface SetupRun extends Setup {
  readonly tasks: number;
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly seconds: number;
  readonly split: readonly number[];
  /** Each round's rate, to show the spread. */
  readonly roundsPerSec: readonly number[];
}

/** A setup's rounds as one: all its tasks over all its time, all its latencies. */
function combine(rounds: readonly RoundResult[]): Omit<SetupRun, keyof Setup> {
  const tasks = sum(rounds.map((r) => r.tasks));
  const seconds = sum(rounds.map((r) => r.seconds));
  const latencies = rounds.flatMap((r) => r.latenciesMs);
  return {
    tasks,
    seconds,
    perSec: tasks / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    split: (rounds[0]?.split ?? []).map((_, g) => sum(rounds.map((r) => r.split[g] ?? 0))),
    roundsPerSec: rounds.map((r) => round(r.tasks / r.seconds, 1)),
  };
}

export const intakeGateways: Benchmark = {
  name: "intake-pg",
  title: "Intake on PostgreSQL, one and two gateways (issue 13)",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 100 : 200;
    const rounds = ctx.quick ? 1 : 3;
    const dir = await ctx.scope.tempDir("mh-bench-intake-pg-");
    const video = await ctx.media.video(1, "160x120");
    // Two warm-up speeches (one per gateway), then one for each measured task. A new store per
    // setup and round, so the same files are new to each.
    const audios = await Promise.all(
      Array.from({ length: count + 2 }, (_, i) => writeWav(join(dir, `speech-${i}.wav`), 0.5, i + 1)),
    );
    const results: RoundResult[][] = SETUPS.map(() => []);
    for (let pass = 0; pass < rounds; pass++) {
      // Each round starts with another setup: load from outside this run drifts, and each setup
      // should meet it early and late alike.
      for (let k = 0; k < SETUPS.length; k++) {
        const i = (pass + k) % SETUPS.length;
        const setup = SETUPS[i] as Setup;
        ctx.log(`round ${pass + 1}/${rounds}: ${count} tasks, ${CLIENTS} clients, ${setup.label}`);
        results[i]?.push(await createTasks(ctx, setup, audios, video));
      }
    }
    const runs: SetupRun[] = SETUPS.map((setup, i) => ({ ...setup, ...combine(results[i] ?? []) }));
    const [sqlite, one, two] = runs as [SetupRun, SetupRun, SetupRun];
    const version = await serverVersion();
    const synchronousCommit = await serverSetting("synchronous_commit");
    return {
      figures: [
        ...runs.map((r) =>
          figure(
            `intake-pg.${r.store.toLowerCase()}.${r.gateways}`,
            `Intake: POST /tasks, ${r.label}`,
            round(r.perSec, 1),
            "tasks/s",
          ),
        ),
        figure(
          "intake-pg.ratio.postgres-sqlite",
          "Intake: PostgreSQL ÷ SQLite, one gateway",
          round(one.perSec / sqlite.perSec, 2),
          "×",
        ),
        figure(
          "intake-pg.ratio.two-one",
          "Intake on PostgreSQL: two gateways ÷ one",
          round(two.perSec / one.perSec, 2),
          "×",
        ),
      ],
      tables: [
        {
          title: `POST /tasks: ${rounds} × ${count} tasks per setup, ${CLIENTS} clients at a time in all`,
          columns: ["setup", "tasks/s", "each round", "p50 ms", "p99 ms", "tasks per gateway"],
          rows: runs.map((r) => [
            r.label,
            round(r.perSec, 1),
            r.roundsPerSec.join(", "),
            round(r.p50Ms, 1),
            round(r.p99Ms, 1),
            r.split.join(" + "),
          ]),
        },
      ],
      method: [
        "Gateway child processes with no machines (tasks stay pending, so only creation is measured: multipart " +
          "upload, hashing, media checks, the store's insert), ffmpeg/ffprobe as every process picks them.",
        "Each task: a new 0.5 s 16 kHz WAV (16 kB, its own bytes) and the same 1 s 160x120 H.264 MP4. One warm-up " +
          `task per gateway first (it brings the template, then known); then ${count} tasks from ${CLIENTS} ` +
          "concurrent clients. tasks/s = tasks ÷ wall time from the first request to the last answer, summed over " +
          `${rounds === 1 ? "the round" : `${rounds} rounds; each round runs every setup, beginning with another one, so that load from outside the run falls on each alike`}.`,
        "SQLite: one gateway, its own data dir. PostgreSQL: a new empty database per setup and round on the local server " +
          `(${version}, synchronous_commit = ${synchronousCommit}). Two gateways: two processes on that database with ` +
          "one shared `--blobs-dir` and their own data dirs; the tasks alternate between them (even to the first, " +
          "odd to the second), the same 4 clients in all, so the offered load is the same as with one gateway.",
        "The two cores of this machine run the clients, the gateways, their ffprobe children and the database alike: " +
          "a second gateway adds an event loop, not a core.",
      ],
      raw: { clients: CLIENTS, rounds, tasksPerRound: count, postgres: { version, synchronousCommit }, runs },
    };
  },
};

async function createTasks(
  ctx: BenchContext,
  setup: Setup,
  audios: readonly string[],
  video: string,
): Promise<RoundResult> {
  const dir = await ctx.scope.tempDir("mh-bench-intake-pg-run-");
  const flags: string[] = [];
  if (setup.store === "PostgreSQL") {
    const database = await createBenchDatabase(ctx.scope);
    flags.push("--store", database.url, "--blobs-dir", join(dir, "shared-blobs"));
  }
  const gateways: Gateway[] = [];
  try {
    for (let g = 0; g < setup.gateways; g++) {
      gateways.push(await startGateway(ctx.scope, dir, [], flags, `gateway-intake-${g + 1}`));
    }
    const [first, second = first] = gateways;
    const [warmA, warmB, ...rest] = audios;
    if (!first || !second || !warmA || !warmB) throw new Error("no gateway, or too few speeches");
    // Warm-ups: the template's probe, the store's first pages, each process's first request.
    await postTask(first.url, warmA, video);
    await postTask(second.url, warmB, video);
    const split = gateways.map(() => 0);
    const latencies: number[] = [];
    const t0 = performance.now();
    await mapLimit(rest, CLIENTS, async (audio, i) => {
      const g = i % gateways.length;
      split[g] = (split[g] ?? 0) + 1;
      const p0 = performance.now();
      await postTask((gateways[g] as Gateway).url, audio, video);
      latencies.push(performance.now() - p0);
    });
    const seconds = (performance.now() - t0) / 1000;
    // Every gateway sees every task: they share one store.
    const expected = rest.length + 2;
    for (const gateway of gateways) {
      const { total } = await getJson<{ total: number }>(`${gateway.url}/tasks?limit=1`);
      if (total !== expected) {
        throw new Error(`${gateway.child.name} lists ${total} tasks, ${expected} were created`);
      }
    }
    return { tasks: rest.length, seconds, latenciesMs: latencies, split };
  } finally {
    for (const gateway of gateways) await gateway.child.kill();
  }
}
