import { type CapacityRun, runCapacity, TIME_SCALE } from "./dispatch-latency.js";
import { createBenchDatabase, serverSetting, serverVersion } from "./postgres.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { mean, percentile, round, sum } from "./stats.js";

/**
 * Issue 13: what the PostgreSQL store costs the dispatcher. Figure 2's measurement (slot freed on
 * a worker → its next job started there), once on SQLite and once on PostgreSQL in the same run,
 * so the ratio compares the stores on the same machine under the same load.
 */

type Store = "SQLite" | "PostgreSQL";

interface StoreRun {
  readonly store: Store;
  readonly tasks: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** The rounds' median engine times, averaged. */
  readonly jobMs: number;
  readonly tasksPerSec: number;
  /** Each round's p50, to show the spread. */
  readonly roundsP50Ms: readonly number[];
}

/** A store's rounds as one: every refill's latency, all tasks over all the time they took. */
function combine(store: Store, rounds: readonly CapacityRun[]): StoreRun {
  const latencies = rounds.flatMap((r) => r.latenciesMs);
  const tasks = sum(rounds.map((r) => r.tasks));
  return {
    store,
    tasks,
    samples: latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    meanMs: mean(latencies),
    maxMs: Math.max(...latencies),
    jobMs: mean(rounds.map((r) => r.jobMs)),
    tasksPerSec: tasks / sum(rounds.map((r) => r.tasks / r.tasksPerSec)),
    roundsP50Ms: rounds.map((r) => r.p50Ms),
  };
}

export const dispatchStores: Benchmark = {
  name: "dispatch-pg",
  title: "Dispatch latency, SQLite and PostgreSQL (issue 13)",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 30 : 120;
    // SQLite, PostgreSQL, then PostgreSQL, SQLite: load from outside the run that drifts falls on both alike.
    const order: Store[] = ctx.quick
      ? ["SQLite", "PostgreSQL"]
      : ["SQLite", "PostgreSQL", "PostgreSQL", "SQLite"];
    const audio = await ctx.media.audio(1);
    const video = await ctx.media.video(1);
    const rounds: Record<Store, CapacityRun[]> = { SQLite: [], PostgreSQL: [] };
    for (const [i, store] of order.entries()) {
      ctx.log(`${i + 1}/${order.length}: ${store}, ${count} tasks`);
      const flags = store === "PostgreSQL" ? ["--store", (await createBenchDatabase(ctx.scope)).url] : [];
      rounds[store].push(await runCapacity(ctx, 1, count, audio, video, flags));
    }
    const runs = [combine("SQLite", rounds.SQLite), combine("PostgreSQL", rounds.PostgreSQL)];
    const [sqlite, postgres] = runs as [StoreRun, StoreRun];
    const version = await serverVersion();
    const synchronousCommit = await serverSetting("synchronous_commit");
    return {
      figures: [
        figure("dispatch-pg.sqlite.p50", "Dispatch latency p50, SQLite", sqlite.p50Ms, "ms"),
        figure("dispatch-pg.sqlite.p99", "Dispatch latency p99, SQLite", sqlite.p99Ms, "ms"),
        figure("dispatch-pg.postgres.p50", "Dispatch latency p50, PostgreSQL", postgres.p50Ms, "ms"),
        figure("dispatch-pg.postgres.p99", "Dispatch latency p99, PostgreSQL", postgres.p99Ms, "ms"),
        figure(
          "dispatch-pg.ratio.p50",
          "Dispatch latency p50: PostgreSQL ÷ SQLite",
          round(postgres.p50Ms / sqlite.p50Ms, 2),
          "×",
        ),
        figure(
          "dispatch-pg.ratio.p99",
          "Dispatch latency p99: PostgreSQL ÷ SQLite",
          round(postgres.p99Ms / sqlite.p99Ms, 2),
          "×",
        ),
      ],
      tables: [
        {
          title: "Slot freed → next job started, on the worker's clock (capacity 1)",
          columns: [
            "store",
            "tasks",
            "samples",
            "p50 ms",
            "p50 ms each round",
            "p99 ms",
            "mean ms",
            "max ms",
            "engine ms/job",
            "tasks/s",
          ],
          rows: runs.map((r) => [
            r.store,
            r.tasks,
            r.samples,
            r.p50Ms,
            r.roundsP50Ms.join(", "),
            r.p99Ms,
            round(r.meanMs, 2),
            r.maxMs,
            round(r.jobMs, 1),
            round(r.tasksPerSec, 1),
          ]),
        },
      ],
      method: [
        `As figure 2, capacity 1: one simulate worker (time scale ${TIME_SCALE}: a 1 s audio sleeps 5 ms) and one ` +
          "gateway (`--health-interval 200`), child processes on 127.0.0.1; the tasks are created while the machine is " +
          "drained, then it is resumed and the worker's journal gives each refill's latency.",
        `${order.length === 2 ? "The same run twice" : `${order.length} rounds of ${count} tasks (${order.join(", ")})`}, each ` +
          `with a fresh gateway and worker: the gateway on SQLite (its data dir), or on PostgreSQL ${version} ` +
          "on this machine (`--store postgres://127.0.0.1/…`, a new empty database, the server's own settings: " +
          `synchronous_commit = ${synchronousCommit}; SQLite runs WAL with synchronous = NORMAL, which does not wait ` +
          "for the disk at each commit).",
        "On PostgreSQL the gateway is alone on its database, so it is elected and dispatches; each dispatch's claim " +
          "checks its term's epoch, and each change is announced to other gateways (none here) with NOTIFY.",
      ],
      raw: { timeScale: TIME_SCALE, order, postgres: { version, synchronousCommit }, runs, rounds },
    };
  },
};
