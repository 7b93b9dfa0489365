import { type CapacityRun, runCapacity, TIME_SCALE } from "./dispatch-latency.js";
import { createBenchDatabase, serverSetting, serverVersion } from "./postgres.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { round } from "./stats.js";

/**
 * Issue 13: what the PostgreSQL store costs the dispatcher. Figure 2's measurement (slot freed on
 * a worker → its next job started there), once on SQLite and once on PostgreSQL in the same run,
 * so the ratio compares the stores on the same machine under the same load.
 */

interface StoreRun extends CapacityRun {
  readonly store: "SQLite" | "PostgreSQL";
}

export const dispatchStores: Benchmark = {
  name: "dispatch-pg",
  title: "8. Dispatch latency, SQLite and PostgreSQL (issue 13)",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 100 : 400;
    const audio = await ctx.media.audio(1);
    const video = await ctx.media.video(1);
    const runs: StoreRun[] = [];
    ctx.log(`SQLite: ${count} tasks`);
    runs.push({ store: "SQLite", ...(await runCapacity(ctx, 1, count, audio, video)) });
    const database = await createBenchDatabase(ctx.scope);
    ctx.log(`PostgreSQL: ${count} tasks`);
    runs.push({
      store: "PostgreSQL",
      ...(await runCapacity(ctx, 1, count, audio, video, ["--store", database.url])),
    });
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
        `The same run twice, one after the other: the gateway on SQLite (its data dir), then on PostgreSQL ${version} ` +
          "on this machine (`--store postgres://127.0.0.1/…`, a new empty database, the server's own settings: " +
          `synchronous_commit = ${synchronousCommit}; SQLite runs WAL with synchronous = NORMAL, which does not wait ` +
          "for the disk at each commit).",
        "On PostgreSQL the gateway is alone on its database, so it is elected and dispatches; each dispatch's claim " +
          "checks its term's epoch, and each change is announced to other gateways (none here) with NOTIFY.",
      ],
      raw: { timeScale: TIME_SCALE, postgres: { version, synchronousCommit }, runs },
    };
  },
};
