import type { JournalLine } from "../src/worker/job-journal.js";
import { readJournal, type SimWorker, startGateway, startSimWorker } from "./fleet.js";
import { mapLimit, until } from "./harness.js";
import { allEnded, allTasks, postTask, type TaskJson } from "./http.js";
import { type BenchContext, type Benchmark, type Figure, figure, type Measured } from "./report.js";
import { mulberry32, round, sum } from "./stats.js";

/**
 * Issue 5, figure 1: how close the gateway keeps a mixed fleet to its ideal throughput. Makespan
 * of a fixed queue ÷ the lower bound no placement can beat, for each placement policy in turn.
 */

export const FLEET = [
  { name: "gpu-1", speedFactor: 1, capacity: 2 },
  { name: "gpu-2", speedFactor: 1, capacity: 1 },
  { name: "gpu-3", speedFactor: 2, capacity: 1 },
  { name: "gpu-4", speedFactor: 4, capacity: 2 },
] as const;
const POLICIES = ["earliest-finish", "least-loaded", "round-robin"] as const;
const DEFAULT_POLICY = "earliest-finish";
export const SEED = 0x5eed05;
export const SUBMITTERS = 4;

/** Σ(capacity ÷ speed factor): audio seconds the whole fleet gets through per second at time scale 1. */
export const THROUGHPUT = sum(FLEET.map((m) => m.capacity / m.speedFactor));
const FASTEST = Math.min(...FLEET.map((m) => m.speedFactor));

export interface PolicyRun {
  policy: string;
  makespanSec: number;
  boundSec: number;
  ratio: number;
  /** The bound again, with each machine's speed as its engine really ran (sleep + remux). */
  engineBoundSec: number | null;
  submitSec: number;
  /** Makespan − the moment the first machine finished its last task: how unevenly the run ended. */
  tailSec: number;
  failed: number;
  /** Tasks that took more than one attempt (a machine lost under them). */
  retried: number;
  /** Σ and longest audio of the tasks, as the gateway probed them (the bound's inputs). */
  audioTotalSec: number;
  audioMaxSec: number;
  perMachine: Record<
    string,
    { tasks: number; audioSec: number; busySec: number | null; overheadMs: number | null }
  >;
  slotBusyShare: number | null;
}

export const utilisation: Benchmark = {
  name: "utilisation",
  title: "Fleet utilisation",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 40 : 200;
    const targetSec = ctx.quick ? 5 : 45;
    const workload = await utilisationWorkload(ctx, count, targetSec);
    const { lengths, timeScale } = workload;

    const runs: PolicyRun[] = [];
    // A quick run judges the default alone; the others are reported, not judged.
    for (const policy of ctx.quick ? [DEFAULT_POLICY] : POLICIES) {
      ctx.log(`${policy}: starting a fresh fleet and gateway`);
      runs.push(await runPolicy(ctx, policy, workload));
      const last = runs[runs.length - 1] as PolicyRun;
      ctx.log(`${policy}: makespan ${round(last.makespanSec, 2)} s, bound ${round(last.boundSec, 2)} s`);
    }

    const figures: Figure[] = runs.map((r) =>
      figure(
        `utilisation.${r.policy}`,
        `Fleet utilisation: makespan ÷ bound, ${r.policy}${r.policy === DEFAULT_POLICY ? " (default)" : ""}`,
        round(r.ratio, 3),
        "×",
        r.policy === DEFAULT_POLICY ? { op: "<=", value: 1.05 } : undefined,
      ),
    );
    const names = FLEET.map((m) => m.name);
    return {
      figures,
      tables: [
        {
          title: `Per policy (${count} tasks, ${round(sum(lengths), 1)} s of audio, time scale ${timeScale})`,
          columns: [
            "policy",
            "makespan s",
            "bound s",
            "ratio",
            "bound with engines as run s",
            "ratio to it",
            "slots busy",
            "submit s",
            "tail s",
            ...names.map((n) => `tasks ${n}`),
            "failed",
          ],
          rows: runs.map((r) => [
            r.policy,
            round(r.makespanSec, 2),
            round(r.boundSec, 2),
            round(r.ratio, 3),
            r.engineBoundSec === null ? "—" : round(r.engineBoundSec, 2),
            r.engineBoundSec === null ? "—" : round(r.makespanSec / r.engineBoundSec, 3),
            r.slotBusyShare === null ? "—" : `${round(r.slotBusyShare * 100, 1)} %`,
            round(r.submitSec, 2),
            round(r.tailSec, 2),
            ...names.map((n) => r.perMachine[n]?.tasks ?? 0),
            r.failed,
          ]),
        },
        {
          title: "Engine time per job beyond the simulated sleep (worker journal: started → finished)",
          columns: ["policy", ...names.map((n) => `${n} ms/job`)],
          rows: runs.map((r) => [
            r.policy,
            ...names.map((n) => {
              const o = r.perMachine[n]?.overheadMs;
              return o === null || o === undefined ? "—" : round(o, 0);
            }),
          ]),
        },
      ],
      method: [
        `Fleet: ${FLEET.map((m) => `${m.name} speed factor ${m.speedFactor} × capacity ${m.capacity}`).join(", ")}; ` +
          "each a `multi-heygem worker --engine simulate` child process on 127.0.0.1 with its own data dir.",
        `${count} tasks with audio lengths drawn from 5–120 s (mulberry32, seed 0x${SEED.toString(16)}, rounded to ` +
          "0.1 s), each an 8 kHz mono AAC file of that length; one shared 2 s 320x240 H.264 video.",
        `Time scale ${timeScale} = ${targetSec} s ÷ (Σ audio ÷ Σ(capacity ÷ speed factor) = ${THROUGHPUT}), so the ideal run lasts about ${targetSec} s.`,
        `All tasks are POSTed up front by ${SUBMITTERS} concurrent clients; makespan = the gateway's last completed_at − ` +
          "the client clock just before the first POST (one machine, one clock).",
        "Bound = max(Σ audio × time scale ÷ Σ(capacity ÷ speed factor), longest audio × fastest factor × time scale), " +
          "with the audio durations the gateway probed (GET /tasks audio_duration).",
        "Each policy gets fresh workers and a fresh gateway (`--placement <policy> --health-interval 200`), same seed.",
        "After its sleep the simulate engine writes the result with ffmpeg (template cut or looped to the audio's " +
          "length); that time is not scaled and not in the bound. 'Bound with engines as run' replaces each " +
          "machine's speed factor by its measured engine seconds per audio second (Σ(finished − started) ÷ Σ audio, " +
          "from the worker's journal), to separate placement from engine overhead. " +
          "'Slots busy' = Σ engine time ÷ (makespan × Σ capacity). 'Tail' = makespan − the moment the first " +
          "machine completed its last task.",
      ],
      raw: { count, timeScale, lengths, throughput: THROUGHPUT, runs },
    };
  },
};

/** The queue every utilisation run works through: same seed, same files, same time scale. */
export interface Workload {
  readonly lengths: readonly number[];
  readonly audioOf: ReadonlyMap<number, string>;
  readonly video: string;
  readonly timeScale: number;
  /** The ideal run's length, which the time scale was chosen for. */
  readonly targetSec: number;
}

export async function utilisationWorkload(
  ctx: BenchContext,
  count: number,
  targetSec: number,
): Promise<Workload> {
  const rand = mulberry32(SEED);
  const lengths = Array.from({ length: count }, () => Math.round((5 + rand() * 115) * 10) / 10);
  const timeScale = round(targetSec / (sum(lengths) / THROUGHPUT), 6);
  ctx.log(`${count} tasks, ${round(sum(lengths))} s of audio, time scale ${timeScale}; making inputs`);
  const video = await ctx.media.video(2);
  const distinct = [...new Set(lengths)];
  const files = await mapLimit(distinct, 2, (s) => ctx.media.audio(s));
  const audioOf = new Map(distinct.map((s, i) => [s, files[i] as string]));
  return { lengths, audioOf, video, timeScale, targetSec };
}

/**
 * What a run may do to its fleet while the queue drains (utilisation-failure.ts kills a machine):
 * `workers` is the run's own list, so a worker restarted in place replaces its entry; `t0` is the
 * client clock just before the first POST, the makespan's origin.
 */
export type DuringRun = (run: { dir: string; workers: SimWorker[]; t0: number }) => Promise<void>;

/** One run of `workload` through a fresh fleet and gateway placing with `policy`. */
export async function runPolicy(
  ctx: BenchContext,
  policy: string,
  workload: Workload,
  during?: DuringRun,
): Promise<PolicyRun> {
  const { lengths, audioOf, video, timeScale, targetSec } = workload;
  const dir = await ctx.scope.tempDir(`mh-bench-util-${policy}-`);
  const workers = await Promise.all(FLEET.map((m) => startSimWorker(ctx.scope, dir, { ...m, timeScale })));
  const gateway = await startGateway(
    ctx.scope,
    dir,
    workers.map((w) => ({ name: w.spec.name, port: w.port, max_concurrent: w.spec.capacity })),
    ["--placement", policy, "--health-interval", "200"],
  );
  try {
    const t0 = Date.now();
    // Settled into a value, so that a failure meanwhile is not an unhandled rejection.
    const disturbed = during?.({ dir, workers, t0 }).then(
      () => undefined,
      (err: unknown) => err ?? new Error("the run's disturbance failed"),
    );
    await mapLimit(lengths, SUBMITTERS, (s) => postTask(gateway.url, audioOf.get(s) as string, video));
    const submitSec = (Date.now() - t0) / 1000;
    await until(
      "every task to end",
      () => allEnded(gateway.url, lengths.length),
      targetSec * 6_000 + 120_000,
      250,
    );
    const failure = await disturbed;
    if (failure !== undefined) throw failure;
    const tasks = await allTasks(gateway.url);
    const done = tasks.filter((t) => t.status === "completed" && t.completed_at !== null);
    const makespanSec = (Math.max(...done.map((t) => Date.parse(t.completed_at as string))) - t0) / 1000;
    const audio = tasks.map((t) => t.audio_duration);
    const lastDone = FLEET.map((m) =>
      Math.max(
        t0,
        ...done.filter((t) => t.machine === m.name).map((t) => Date.parse(t.completed_at as string)),
      ),
    );
    const boundSec = Math.max(
      (sum(audio) * timeScale) / THROUGHPUT,
      Math.max(...audio) * FASTEST * timeScale,
    );
    const perMachine = await machineFacts(workers, tasks, timeScale);
    const measured = workers.map((w) => {
      const facts = perMachine[w.spec.name];
      // Engine seconds per audio second as it ran; a machine without work keeps its nominal speed.
      const speed =
        facts?.busySec != null && facts.audioSec > 0
          ? facts.busySec / facts.audioSec
          : w.spec.speedFactor * timeScale;
      return { capacity: w.spec.capacity, speed, busySec: facts?.busySec ?? null };
    });
    const haveJournals = measured.every((m) => m.busySec !== null);
    const engineBoundSec = haveJournals
      ? Math.max(
          sum(audio) / sum(measured.map((m) => m.capacity / m.speed)),
          Math.max(...audio) * Math.min(...measured.map((m) => m.speed)),
        )
      : null;
    const slots = sum(workers.map((w) => w.spec.capacity));
    return {
      policy,
      makespanSec,
      boundSec,
      ratio: makespanSec / boundSec,
      engineBoundSec,
      submitSec,
      tailSec: makespanSec - (Math.min(...lastDone) - t0) / 1000,
      failed: tasks.length - done.length,
      retried: tasks.filter((t) => t.attempts > 1).length,
      audioTotalSec: sum(audio),
      audioMaxSec: Math.max(...audio),
      perMachine,
      slotBusyShare: haveJournals ? sum(measured.map((m) => m.busySec ?? 0)) / (makespanSec * slots) : null,
    };
  } finally {
    await gateway.child.kill();
    await Promise.all(workers.map((w) => w.child.kill()));
  }
}

async function machineFacts(workers: readonly SimWorker[], tasks: readonly TaskJson[], timeScale: number) {
  const facts: PolicyRun["perMachine"] = {};
  for (const w of workers) {
    const mine = tasks.filter((t) => t.machine === w.spec.name && t.status === "completed");
    const audioSec = sum(mine.map((t) => t.audio_duration));
    const journal = await readJournal(w);
    const busySec = journal ? engineSeconds(journal) : null;
    const sleepSec = audioSec * w.spec.speedFactor * timeScale;
    facts[w.spec.name] = {
      tasks: mine.length,
      audioSec,
      busySec,
      overheadMs: busySec !== null && mine.length > 0 ? ((busySec - sleepSec) * 1000) / mine.length : null,
    };
  }
  return facts;
}

/** Σ (finished − started) over the jobs of one worker's journal, in seconds. */
function engineSeconds(journal: readonly JournalLine[]): number {
  const started = new Map<string, number>();
  const spans: number[] = [];
  for (const line of journal) {
    if (line.event === "started") started.set(line.job_id, Date.parse(line.at));
    else if (line.event === "finished") {
      const from = started.get(line.job_id);
      if (from !== undefined) spans.push(Date.parse(line.at) - from);
    }
  }
  return sum(spans) / 1000;
}
