import type { JournalLine } from "../src/worker/job-journal.js";
import { readJournal, startGateway, startSimWorker } from "./fleet.js";
import { mapLimit, until } from "./harness.js";
import { allEnded, postEmpty, postTask } from "./http.js";
import { type BenchContext, type Benchmark, type Figure, figure, type Measured } from "./report.js";
import { mean, median, percentile, round } from "./stats.js";

/**
 * Issue 5, figure 2: from a slot freeing on a worker (its job finished) to the next task's job
 * starting on that worker — the gateway's whole reaction: notice the finish (long-poll answer),
 * release the slot, run a scheduling pass, record the attempt in SQLite and PUT the job.
 */

const MACHINE = "gpu-1";
/** 1 s of audio × this = a 5 ms simulated job, so the queue drains at the gateway's pace. */
export const TIME_SCALE = 0.005;

export interface CapacityRun {
  capacity: number;
  tasks: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  /** Median engine time per job (started → finished): the 5 ms sleep plus writing the result with ffmpeg. */
  jobMs: number;
  tasksPerSec: number;
  latenciesMs: number[];
}

export const dispatchLatency: Benchmark = {
  name: "dispatch",
  title: "Dispatch latency",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 50 : 300;
    const audio = await ctx.media.audio(1);
    const video = await ctx.media.video(1);
    const runs: CapacityRun[] = [];
    for (const capacity of [1, 2]) {
      ctx.log(`capacity ${capacity}: ${count} tasks`);
      runs.push(await runCapacity(ctx, capacity, count, audio, video));
    }
    const [one, two] = runs as [CapacityRun, CapacityRun];
    const figures: Figure[] = [
      figure("dispatch.p50", "Dispatch latency p50 (capacity 1)", one.p50Ms, "ms", { op: "<=", value: 5 }),
      figure("dispatch.p99", "Dispatch latency p99 (capacity 1)", one.p99Ms, "ms", { op: "<=", value: 20 }),
      figure("dispatch.cap2.p50", "Dispatch latency p50 (capacity 2)", two.p50Ms, "ms"),
      figure("dispatch.cap2.p99", "Dispatch latency p99 (capacity 2)", two.p99Ms, "ms"),
    ];
    return {
      figures,
      tables: [
        {
          title: "Slot freed → next job started, on the worker's clock",
          columns: [
            "capacity",
            "tasks",
            "samples",
            "p50 ms",
            "p99 ms",
            "mean ms",
            "max ms",
            "engine ms/job",
            "tasks/s",
          ],
          rows: runs.map((r) => [
            r.capacity,
            r.tasks,
            r.samples,
            r.p50Ms,
            r.p99Ms,
            round(r.meanMs, 2),
            r.maxMs,
            round(r.jobMs, 1),
            round(r.tasksPerSec, 1),
          ]),
        },
      ],
      method: [
        `One simulate worker (speed factor 1, time scale ${TIME_SCALE}: a 1 s audio sleeps 5 ms), one gateway ` +
          "(`--health-interval 200`), both child processes on 127.0.0.1; run once with capacity 1 and once with capacity 2.",
        `${count} tasks sharing one 1 s audio and one 1 s video are created while the machine is drained ` +
          "(POST /machines/gpu-1/drain), then it is resumed, so the uploads do not compete with dispatching.",
        "From the worker's journal.jsonl: each `finished` line is paired with the first not yet paired `started` " +
          "line after it (a slot freed, then refilled); latency = the difference. Both timestamps come from the " +
          "worker's clock, with the journal's millisecond resolution; the first `capacity` starts have no finish before them.",
        "Percentiles are nearest-rank. 'engine ms/job' (median) is started → finished: the 5 ms sleep plus the " +
          "simulate engine writing the result with ffmpeg; it is not part of the latency.",
      ],
      raw: { timeScale: TIME_SCALE, runs },
    };
  },
};

/** One gateway and one worker of `capacity`; `flags` go to the gateway (`--store postgres://…`). */
export async function runCapacity(
  ctx: BenchContext,
  capacity: number,
  count: number,
  audio: string,
  video: string,
  flags: readonly string[] = [],
): Promise<CapacityRun> {
  const dir = await ctx.scope.tempDir(`mh-bench-dispatch-${capacity}-`);
  const worker = await startSimWorker(ctx.scope, dir, {
    name: MACHINE,
    capacity,
    speedFactor: 1,
    timeScale: TIME_SCALE,
  });
  const gateway = await startGateway(
    ctx.scope,
    dir,
    [{ name: MACHINE, port: worker.port, max_concurrent: capacity }],
    ["--health-interval", "200", ...flags],
  );
  try {
    await postEmpty(`${gateway.url}/machines/${MACHINE}/drain`);
    await mapLimit(Array.from({ length: count }), 4, () => postTask(gateway.url, audio, video));
    const t0 = performance.now();
    await postEmpty(`${gateway.url}/machines/${MACHINE}/resume`);
    await until("every task to end", () => allEnded(gateway.url, count), count * 1_000 + 60_000, 100);
    const seconds = (performance.now() - t0) / 1000;
    const journal = await readJournal(worker);
    if (!journal || journal.length === 0) {
      throw new Error(
        `the worker wrote no ${worker.dataDir}/journal.jsonl: dispatch latency needs its journal`,
      );
    }
    const latencies = refillLatencies(journal);
    return {
      capacity,
      tasks: count,
      samples: latencies.length,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      meanMs: mean(latencies),
      maxMs: Math.max(...latencies),
      jobMs: median(jobDurations(journal)),
      tasksPerSec: count / seconds,
      latenciesMs: latencies,
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
  }
}

/** Each finish, paired with the first unpaired start after it: how long a freed slot stood empty. */
export function refillLatencies(journal: readonly JournalLine[]): number[] {
  const freed: number[] = [];
  const latencies: number[] = [];
  for (const line of journal) {
    const at = Date.parse(line.at);
    if (line.event === "finished") freed.push(at);
    else if (line.event === "started") {
      const since = freed.shift();
      if (since !== undefined) latencies.push(at - since);
    }
  }
  return latencies;
}

function jobDurations(journal: readonly JournalLine[]): number[] {
  const started = new Map<string, number>();
  const durations: number[] = [];
  for (const line of journal) {
    if (line.event === "started") started.set(line.job_id, Date.parse(line.at));
    else if (line.event === "finished") {
      const from = started.get(line.job_id);
      if (from !== undefined) durations.push(Date.parse(line.at) - from);
    }
  }
  return durations;
}
